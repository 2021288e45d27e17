"""The protocol between the server role (LLM) and the client role (SLM).

The roles talk only through named tasks with typed payloads. A payload is a dataclass of
scalars, lists of scalars, and numpy arrays; ``to_record`` splits it into a ``config`` part
(JSON-able scalars and homogeneous lists, what Flower calls a ConfigRecord) and an ``arrays``
part (what Flower calls an ArrayRecord), so any engine can carry it unchanged.

What crosses the network: public sample ids, reasoning paths on public samples, features of
public samples, top-k logits on public samples' gold texts (FedMKT), model weights (FedCoLLM),
losses and metrics. Never a private sample.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np


class Task(StrEnum):
    LOCAL_TRAIN = "local_train"  # host step on private data
    EMBED = "embed"  # features of public samples (filter contexts)
    GENERATE = "generate"  # reasoning paths for public ids (the SLM teaching the LLM)
    DISTILL = "distill"  # learn from teacher paths: L_host + λ·L_CD; report losses
    EVALUATE = "evaluate"  # accuracy on the private test set
    SCORE = "score"  # learner's NLL of given paths on public ids (allocation baselines)
    GET_WEIGHTS = "get_weights"  # the SLM's trainable weights (FedCoLLM's FedAvg)
    SET_WEIGHTS = "set_weights"  # load averaged weights (FedCoLLM's FedAvg)
    LOGITS = "logits"  # the SLM's top-k logits and CE on public gold texts (FedMKT)
    DISTILL_LOGITS = "distill_logits"  # learn from the LLM's top-k logits (+ paths): FedMKT


Record = dict[str, Any]  # {"config": {...}, "arrays": {name: np.ndarray}}
# Payloads carry no wall-clock times: message sizes must depend only on the computation, so a
# resumed run reports the same bytes as an unbroken one. Engines time the tasks themselves.


class WireError(ValueError):
    """Bytes or a record that are not a well-formed message of the protocol (truncated,
    garbled, oversize, or lacking a payload's fields). Every decode path raises this type only."""


@dataclass(frozen=True)
class Echo:
    """What a reply says it answers: the task, the round and the client (ours). The client
    role stamps every reply with it; the server rejects a reply whose echo differs from what
    it asked (a reply replayed from another round, sent for another task or client)."""

    task: str
    round: int
    client: int


ECHO_KEYS = ("_task", "_round", "_client")  # config keys of the echo (no payload field has "_")


@dataclass
class Payload:
    """Base class: dataclass fields of type np.ndarray go to ``arrays``, the rest to ``config``.

    ``echo`` (not a dataclass field) is a reply's :class:`Echo`, carried in ``config``."""

    TASK: ClassVar[Task | None] = None
    echo: ClassVar[Echo | None] = None  # set per instance on replies (see Echo)

    def to_record(self) -> Record:
        config: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                arrays[f.name] = v
            else:
                config[f.name] = v
        if self.echo is not None:
            e = self.echo
            config.update(zip(ECHO_KEYS, (e.task, e.round, e.client), strict=True))
        return {"config": config, "arrays": arrays}

    @classmethod
    def from_record(cls, record: Record) -> Any:
        """The payload in ``record``; :class:`WireError` when a field is missing or a value
        cannot be a field's (a list where a scalar belongs, ...). Values are not range-checked
        here: that is :mod:`lada.federation.validation`'s job."""
        if not isinstance(record, dict):
            raise WireError(f"{cls.__name__}: a record is a mapping, got {type(record).__name__}")
        config, arrays = record.get("config", {}), record.get("arrays", {})
        if not isinstance(config, dict) or not isinstance(arrays, dict):
            raise WireError(f"{cls.__name__}: record's config and arrays must be mappings")
        values = {**config, **arrays}
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(values)
        if missing:
            raise WireError(f"{cls.__name__}: record lacks fields {sorted(missing)}")
        kwargs = {k: values[k] for k in names}
        for f in dataclasses.fields(cls):
            if isinstance(kwargs[f.name], list | tuple) and not isinstance(kwargs[f.name], str):
                kwargs[f.name] = list(kwargs[f.name])
        out = cls(**kwargs)
        echo = [config.get(key) for key in ECHO_KEYS]
        if any(v is not None for v in echo):
            task, round_idx, client = echo
            if not (
                isinstance(task, str)
                and all(isinstance(v, int) and not isinstance(v, bool) for v in echo[1:])
            ):
                raise WireError(f"{cls.__name__}: malformed echo {echo!r}")
            out.echo = Echo(task, round_idx, client)  # type: ignore[misc]
        return out


# ---- server -> client ------------------------------------------------------------------


@dataclass
class LocalTrainIns(Payload):
    TASK: ClassVar[Task] = Task.LOCAL_TRAIN
    round: int


@dataclass
class EmbedIns(Payload):
    TASK: ClassVar[Task] = Task.EMBED
    round: int
    ids: list[str]


@dataclass
class GenerateIns(Payload):
    TASK: ClassVar[Task] = Task.GENERATE
    round: int
    ids: list[str]


@dataclass
class DistillIns(Payload):
    TASK: ClassVar[Task] = Task.DISTILL
    round: int
    ids: list[str]
    teacher_paths: list[str]


@dataclass
class EvaluateIns(Payload):
    TASK: ClassVar[Task] = Task.EVALUATE
    round: int


@dataclass
class ScoreIns(Payload):
    """Score ``paths`` (public ids' candidate teacher paths, or their gold targets)."""

    TASK: ClassVar[Task] = Task.SCORE
    round: int
    ids: list[str]
    paths: list[str]


@dataclass
class GetWeightsIns(Payload):
    TASK: ClassVar[Task] = Task.GET_WEIGHTS
    round: int


@dataclass
class SetWeightsIns(Payload):
    """Averaged trainable weights: ``flat`` is the float32 concatenation of ``names``'
    tensors in order, ``shapes`` their JSON-encoded shapes."""

    TASK: ClassVar[Task] = Task.SET_WEIGHTS
    round: int
    names: list[str]
    shapes: str
    flat: np.ndarray


@dataclass
class LogitsIns(Payload):
    """Compute top-k logits (``top_k`` per token) and CE on the gold texts of public ``ids``."""

    TASK: ClassVar[Task] = Task.LOGITS
    round: int
    ids: list[str]
    top_k: int


@dataclass
class LogitDistillIns(Payload):
    """FedMKT's learner step on public ``ids``: the teacher's (the LLM's) top-k logits on their
    gold texts (layout of :class:`lada.train.logit_distill.TopKLogits`), its CE per sample, its
    vocabulary fingerprint and name, and with LaDa its reasoning paths (else empty)."""

    TASK: ClassVar[Task] = Task.DISTILL_LOGITS
    round: int
    ids: list[str]
    teacher_paths: list[str]
    model: str
    vocab: str
    lengths: np.ndarray  # [n] int32: supervised tokens per sample
    indices: np.ndarray  # [N, k] int16/int32 token ids
    values: np.ndarray  # [N, k] float16 logits
    ce: np.ndarray  # [n] float32: the teacher's mean token NLL of each gold target


# ---- client -> server ------------------------------------------------------------------


@dataclass
class LocalTrainRes(Payload):
    num_samples: int
    mean_loss: float


@dataclass
class EmbedRes(Payload):
    ids: list[str]
    features: np.ndarray  # [n, d] float32


@dataclass
class PathsRes(Payload):
    ids: list[str]
    paths: list[str]


@dataclass
class DistillRes(Payload):
    ids: list[str]
    loss_before: np.ndarray  # learner's mean token NLL of each teacher path before training
    loss_after: np.ndarray  # ... and after
    margin: np.ndarray  # contrastive margin per sample after training (0 where skipped)
    num_pairs: int  # L_CD pairs used (identical paths skipped)
    # 1 where the pick entered the learner's loss (distill.unverified=skip leaves some out);
    # only those are rewarded. Empty: not reported, every pick counts as trained
    trained: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8), kw_only=True)


@dataclass
class EvaluateRes(Payload):
    num_samples: int
    accuracy: float
    groups: str = field(default="{}")  # JSON {key: {value: [correct, n]}} (group_counts)
    # per-question correctness in test-set order, "1"/"0" per question (bench CIs, ours)
    correct: str = ""


@dataclass
class ScoreRes(Payload):
    ids: list[str]
    nll_cond: np.ndarray  # mean token NLL of each path given the question: log PPL(y|x)
    nll_uncond: np.ndarray  # ... without the question (BOS only): log PPL(y)


@dataclass
class WeightsRes(Payload):
    num_samples: int  # FedAvg weight: the client's private training samples
    names: list[str]
    shapes: str  # JSON list of shapes, aligned with names
    flat: np.ndarray  # float32 concatenation of the tensors


@dataclass
class SetWeightsRes(Payload):
    num_params: int


@dataclass
class LogitsRes(Payload):
    """The SLM's top-k logits on the asked ids' gold texts (see :class:`LogitDistillIns`)."""

    ids: list[str]
    model: str
    vocab: str
    lengths: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    ce: np.ndarray


@dataclass
class LogitDistillRes(DistillRes):
    num_distilled: int  # samples distilled from the teacher's logits (min-CE picks)


INSTRUCTIONS: dict[Task, type[Payload]] = {
    Task.LOCAL_TRAIN: LocalTrainIns,
    Task.EMBED: EmbedIns,
    Task.GENERATE: GenerateIns,
    Task.DISTILL: DistillIns,
    Task.EVALUATE: EvaluateIns,
    Task.SCORE: ScoreIns,
    Task.GET_WEIGHTS: GetWeightsIns,
    Task.SET_WEIGHTS: SetWeightsIns,
    Task.LOGITS: LogitsIns,
    Task.DISTILL_LOGITS: LogitDistillIns,
}
RESULTS: dict[Task, type[Payload]] = {
    Task.LOCAL_TRAIN: LocalTrainRes,
    Task.EMBED: EmbedRes,
    Task.GENERATE: PathsRes,
    Task.DISTILL: DistillRes,
    Task.EVALUATE: EvaluateRes,
    Task.SCORE: ScoreRes,
    Task.GET_WEIGHTS: WeightsRes,
    Task.SET_WEIGHTS: SetWeightsRes,
    Task.LOGITS: LogitsRes,
    Task.DISTILL_LOGITS: LogitDistillRes,
}


# tasks that only read the client's model (an engine that keeps mid-round state on disk need
# not save it after them); any other task may change the model
READ_ONLY_TASKS: set[str] = {"embed", "generate", "score", "get_weights", "evaluate", "logits"}


def register_task(
    name: str, ins: type[Payload], res: type[Payload], read_only: bool = False
) -> None:
    """Add a task a host needs beyond the built-in ones: ``ins`` goes to the client, ``res``
    comes back. Engines look payload types up here (a Flower ClientApp registers a handler per
    task known when it is made)."""
    known = INSTRUCTIONS.get(name), RESULTS.get(name)
    if known != (None, None) and known != (ins, res):
        raise ValueError(f"task {name!r} is registered already with other payloads")
    INSTRUCTIONS[name] = ins  # type: ignore[index]
    RESULTS[name] = res  # type: ignore[index]
    if read_only:
        READ_ONLY_TASKS.add(name)


def unregister_task(name: str) -> None:
    """Forget a registered task (tests); the built-in tasks stay."""
    if name in {str(t) for t in Task}:
        raise ValueError(f"task {name!r} is built in")
    INSTRUCTIONS.pop(name, None)  # type: ignore[call-overload]
    RESULTS.pop(name, None)  # type: ignore[call-overload]
    READ_ONLY_TASKS.discard(name)


def encode(record: Record) -> bytes:
    """Serialise a record to bytes (JSON header + raw little-endian arrays): the wire format
    of the in-process engine, and the byte count every engine reports."""
    arrays = record.get("arrays", {})
    header = {
        "config": record.get("config", {}),
        "arrays": [[k, str(a.dtype), list(a.shape)] for k, a in arrays.items()],
    }
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    parts = [len(head).to_bytes(8, "little"), head]
    parts += [
        np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes() for a in arrays.values()
    ]
    return b"".join(parts)


# dtypes a message may carry: numbers and booleans (never objects, strings or void records)
WIRE_DTYPE_KINDS = frozenset("biuf")
MAX_ARRAYS = 1024  # arrays per message
MAX_NDIM = 8  # dimensions per array


def encoded_size(record: Record) -> int:
    """``len(encode(record))`` without building the bytes."""
    arrays = record.get("arrays", {})
    header = {
        "config": record.get("config", {}),
        "arrays": [[k, str(a.dtype), list(a.shape)] for k, a in arrays.items()],
    }
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    return 8 + len(head) + sum(int(a.nbytes) for a in arrays.values())


def decode(data: bytes, max_bytes: int | None = None) -> Record:
    """Parse :func:`encode`'s bytes. Anything else (truncated, garbled, trailing bytes, a dtype
    outside :data:`WIRE_DTYPE_KINDS`, more than ``max_bytes``) raises :class:`WireError`,
    before any allocation larger than ``data`` itself."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if max_bytes is not None and len(data) > max_bytes:
        raise WireError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) < 8:
        raise WireError(f"message of {len(data)} bytes is shorter than its 8-byte length prefix")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise WireError(f"header length {n} exceeds the {len(data) - 8} bytes that follow")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, a 5000-digit number
        raise WireError(f"header is not UTF-8 JSON: {e}") from None
    if (
        not isinstance(header, dict)
        or set(header) != {"config", "arrays"}
        or not isinstance(header["config"], dict)
        or not isinstance(header["arrays"], list)
    ):
        raise WireError("header must be {'config': {...}, 'arrays': [...]}")
    if len(header["arrays"]) > MAX_ARRAYS:
        raise WireError(f"{len(header['arrays'])} arrays (at most {MAX_ARRAYS})")
    offset = 8 + n
    arrays: dict[str, np.ndarray] = {}
    for entry in header["arrays"]:
        name, dt, shape = _array_entry(entry)
        if name in arrays:
            raise WireError(f"array {name!r} appears twice")
        count = 1
        for d in shape:
            count *= d
        size = count * dt.itemsize
        if size > len(data) - offset:
            raise WireError(
                f"array {name!r} {dt.name}{shape} needs {size} bytes, {len(data) - offset} left"
            )
        try:
            flat = np.frombuffer(data, dtype=dt, count=count, offset=offset)
            arrays[name] = flat.reshape(shape).copy()
        except (ValueError, OverflowError) as e:  # e.g. a zero-size shape numpy cannot hold
            raise WireError(f"array {name!r}: shape {list(shape)}: {e}") from None
        offset += size
    if offset != len(data):
        raise WireError(f"{len(data) - offset} trailing bytes after the last array")
    return {"config": header["config"], "arrays": arrays}


def _array_entry(entry: Any) -> tuple[str, np.dtype, tuple[int, ...]]:
    """One ``[name, dtype, shape]`` of a header, checked."""
    if not (isinstance(entry, list) and len(entry) == 3):
        raise WireError(f"array entry {entry!r:.80} is not [name, dtype, shape]")
    name, dtype, shape = entry
    if not isinstance(name, str) or not isinstance(dtype, str) or not isinstance(shape, list):
        raise WireError(f"array entry {entry!r:.80} is not [name, dtype, shape]")
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError) as e:
        raise WireError(f"array {name!r}: unknown dtype {dtype!r:.40}: {e}") from None
    if dt.kind not in WIRE_DTYPE_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise WireError(f"array {name!r}: dtype {dtype!r:.40} is not a number type")
    if len(shape) > MAX_NDIM or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise WireError(f"array {name!r}: bad shape {shape!r:.80}")
    return name, dt.newbyteorder("<"), tuple(shape)
