"""Checks of every message against what was asked (ours; docs/threat-model.md).

Two pure functions, one per side of the wire:

- :func:`validate_reply` (server side): is ``reply`` an acceptable answer to ``instruction``?
  The payload type of the task, the echo (task, round, client: a reply replayed from another
  round or meant for another task is refused), field types, the public ids exactly as
  allocated and in order, array dtypes and shapes, finite numbers, the number of paths and
  each path's length, and the message's total size. Returns the reason of the first failed
  check, or None.
- :func:`validate_instruction` (client side): the same for what the server sends (its ids
  must be public ids this client holds, weights and logits consistent and finite).

Neither looks at what a value *means*: a well-formed reply full of wrong reasoning passes.
The limits are ``RunConfig.limits`` (:class:`lada.config.schema.LimitsConfig`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from lada.config.schema import LimitsConfig
from lada.federation.protocol import (
    INSTRUCTIONS,
    RESULTS,
    DistillIns,
    DistillRes,
    EmbedRes,
    EvaluateRes,
    LocalTrainRes,
    LogitDistillIns,
    LogitDistillRes,
    LogitsIns,
    LogitsRes,
    PathsRes,
    Payload,
    ScoreIns,
    ScoreRes,
    SetWeightsIns,
    Task,
    WeightsRes,
    encoded_size,
)


class InvalidMessage(ValueError):
    """A message failed validation (raised on the client side; the server rejects quietly)."""


class _Bad(Exception):
    pass


@dataclass(frozen=True)
class Expected:
    """What the server knows a reply must match, when it knows it: FedMKT's vocabulary
    fingerprint (LOGITS) and FedCoLLM's parameter names and shapes (GET_WEIGHTS)."""

    vocab: str | None = None
    weight_names: tuple[str, ...] | None = None
    weight_shapes: tuple[tuple[int, ...], ...] | None = None
    vocab_rows: int | None = None  # top-k token ids index the server's logits: below this


def validate_reply(
    task: Task,
    instruction: Payload,
    reply: Any,
    limits: LimitsConfig,
    *,
    client: int | None = None,
    feature_dim: int | None = None,
    expect: Expected | None = None,
) -> str | None:
    """Why ``reply`` (from ``client``) is not an acceptable answer to ``instruction``, or None.

    ``feature_dim``: the width this client's EMBED features had before (its filters' input),
    when known; ``expect``: what the server knows a reply must match (vocabulary, weights)."""
    try:
        _check_reply(_as_task(task), instruction, reply, limits, client, feature_dim, expect)
    except _Bad as e:
        return str(e)
    return None


def validate_instruction(
    task: Task,
    instruction: Any,
    limits: LimitsConfig,
    public_ids: Collection[str],
) -> None:
    """Raise :class:`InvalidMessage` when ``instruction`` is not a well-formed ``task``
    message for a client holding the public ids ``public_ids``."""
    try:
        _check_instruction(_as_task(task), instruction, limits, public_ids)
    except _Bad as e:
        raise InvalidMessage(f"{task} instruction rejected: {e}") from None


# ---- shared pieces ---------------------------------------------------------------------


def _as_task(task: Task | str) -> Task | str:
    """A built-in task as its :class:`Task`; a task a host registered
    (:func:`lada.federation.protocol.register_task`) as its name: it gets the generic checks
    (payload type, echo, field limits, round, ids)."""
    return Task(task) if task in {t.value for t in Task} else str(task)


def _need(ok: bool, reason: str) -> None:
    if not ok:
        raise _Bad(reason)


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _is_float(v: Any) -> bool:
    return _is_int(v) or (isinstance(v, float | np.floating) and not isinstance(v, bool))


def _check_fields(payload: Payload, limits: LimitsConfig) -> None:
    """Each dataclass field has its annotated type; numbers are finite; the message fits."""
    name = type(payload).__name__
    for f in dataclasses.fields(payload):
        v = getattr(payload, f.name)
        kind = str(f.type)
        if kind == "int":
            _need(_is_int(v), f"{name}.{f.name}: expected an integer, got {type(v).__name__}")
            _need(INT64_MIN <= int(v) <= INT64_MAX, f"{name}.{f.name}: {str(v):.24} outside int64")
        elif kind == "float":
            _need(_is_float(v), f"{name}.{f.name}: expected a number, got {type(v).__name__}")
        elif kind == "str":
            _need(isinstance(v, str), f"{name}.{f.name}: expected a string")
        elif kind == "list[str]":
            _need(
                isinstance(v, list) and all(isinstance(x, str) for x in v),
                f"{name}.{f.name}: expected a list of strings",
            )
        elif kind.startswith("np.ndarray"):
            _need(isinstance(v, np.ndarray), f"{name}.{f.name}: expected an array")
            _need(v.dtype.kind in "biuf", f"{name}.{f.name}: dtype {v.dtype} is not numeric")
            if v.dtype.kind == "f":
                _need(bool(np.isfinite(v).all()), f"{name}.{f.name}: non-finite values")
                big = _abs_max(v)
                _need(
                    big <= limits.max_abs_value,
                    f"{name}.{f.name}: |value| {big:.3g} exceeds limits.max_abs_value="
                    f"{limits.max_abs_value:g}",
                )
        else:  # pragma: no cover - a new payload field type needs a rule here
            raise _Bad(f"{name}.{f.name}: no validation rule for type {kind!r}")
    try:
        size = encoded_size(payload.to_record())
    except (TypeError, ValueError) as e:
        raise _Bad(f"{name}: cannot be encoded: {e}") from None
    _need(
        size <= limits.max_message_bytes,
        f"{name}: {size} bytes exceed limits.max_message_bytes={limits.max_message_bytes}",
    )


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _abs_max(a: np.ndarray) -> float:
    """max |a| without a copy of ``a`` (0 when empty)."""
    return max(float(a.max()), -float(a.min())) if a.size else 0.0


def _bounded(what: str, v: Any, bound: float, limit: str) -> None:
    """Every value of ``v`` (a number or an array) within ±``bound`` (``limits.<limit>``)."""
    big = _abs_max(np.asarray(v, dtype=np.float64))
    _need(big <= bound, f"{what}: |value| {big:.3g} exceeds limits.{limit}={bound:g}")


def _loss(payload: Payload, field: str, n: int, limits: LimitsConfig) -> None:
    """A vector of ``n`` losses, each within ±``limits.max_abs_loss``."""
    _bounded(field, _vector(payload, field, n), limits.max_abs_loss, "max_abs_loss")


def _count(what: str, v: int, limits: LimitsConfig) -> None:
    _need(
        0 <= v <= limits.max_num_samples,
        f"{what} {v} outside 0..limits.max_num_samples={limits.max_num_samples}",
    )


def _vector(payload: Payload, field: str, n: int, kinds: str = "f") -> np.ndarray:
    a = getattr(payload, field)
    _need(a.dtype.kind in kinds, f"{field}: dtype {a.dtype} (expected kind {kinds!r})")
    _need(a.shape == (n,), f"{field}: shape {a.shape}, expected ({n},)")
    return a


def _paths(paths: list[str], n: int, limits: LimitsConfig, what: str) -> None:
    _need(len(paths) == n, f"{what}: {len(paths)} paths for {n} ids")
    for i, p in enumerate(paths):
        _need(
            len(p) <= limits.max_path_chars,
            f"{what}[{i}]: {len(p)} characters exceed limits.max_path_chars="
            f"{limits.max_path_chars}",
        )


def _topk(payload: Payload, n: int, top_k: int, limits: LimitsConfig) -> None:
    """lengths [n] ≥ 0; indices [sum(lengths), k] ≥ 0 with k ≤ top_k; values alike; ce [n]."""
    lengths = _vector(payload, "lengths", n, "iu")
    _need(bool((lengths >= 0).all()), "lengths: negative")
    idx, val = payload.indices, payload.values  # type: ignore[attr-defined]
    _need(idx.dtype.kind in "iu" and idx.ndim == 2, f"indices: {idx.dtype}{idx.shape}")
    # with every length at most the rows sent, their int64 sum cannot wrap around; otherwise the
    # exact sum (Python integers) goes into the refusal
    if n and int(lengths.max()) > idx.shape[0]:
        total = sum(int(x) for x in lengths.tolist())
    else:
        total = int(np.sum(lengths, dtype=np.int64))
    _need(val.dtype.kind == "f" and val.shape == idx.shape, f"values: {val.dtype}{val.shape}")
    _need(idx.shape[0] == total, f"indices: {idx.shape[0]} rows for {total} tokens")
    k_max = min(top_k, limits.max_top_k)
    _need(total == 0 or 1 <= idx.shape[1] <= k_max, f"indices: k={idx.shape[1]} > {k_max}")
    _need(idx.size == 0 or int(idx.min()) >= 0, "indices: negative token ids")
    _loss(payload, "ce", n, limits)


# ---- replies (server side) -------------------------------------------------------------


def _check_reply(
    task: Task,
    ins: Payload,
    reply: Any,
    limits: LimitsConfig,
    client: int | None,
    feature_dim: int | None,
    expect: Expected | None = None,
) -> None:
    expect = expect or Expected()
    expected = RESULTS[task]
    _need(
        type(reply) is expected,
        f"expected a {expected.__name__} for {task}, got {type(reply).__name__}",
    )
    echo = reply.echo
    _need(echo is not None, "the reply does not say which task, round and client it answers")
    _need(echo.task == str(task), f"the reply answers task {echo.task!r}, not {str(task)!r}")
    asked_round = getattr(ins, "round", None)
    _need(
        echo.round == asked_round,
        f"the reply answers round {echo.round}, not round {asked_round} (replayed?)",
    )
    _need(client is None or echo.client == client, f"the reply is client {echo.client}'s")
    _check_fields(reply, limits)
    if hasattr(ins, "ids"):
        asked = list(ins.ids)  # type: ignore[attr-defined]
        got = list(reply.ids)
        if got != asked:
            extra = sorted(set(got) - set(asked))[:3]
            _need(
                False,
                f"ids differ from the {len(asked)} asked ({len(got)} returned"
                + (f", not asked: {extra}" if extra else ", order or count differs")
                + ")",
            )
        n = len(asked)
    if isinstance(reply, LocalTrainRes):
        _count("num_samples", reply.num_samples, limits)
        _need(
            math.isfinite(reply.mean_loss) or reply.num_samples == 0,
            f"mean_loss {reply.mean_loss} is not finite",
        )
        if math.isfinite(reply.mean_loss):
            _bounded("mean_loss", reply.mean_loss, limits.max_abs_loss, "max_abs_loss")
    elif isinstance(reply, EmbedRes):
        x = reply.features
        _need(
            x.dtype.kind == "f" and x.ndim == 2,
            f"features: {x.dtype}{x.shape}, expected 2-D floats",
        )
        _need(x.shape[0] == n, f"features: {x.shape[0]} rows for {n} ids")
        _need(
            1 <= x.shape[1] <= limits.max_feature_dim,
            f"features: width {x.shape[1]} outside 1..limits.max_feature_dim",
        )
        _need(
            feature_dim is None or x.shape[1] == feature_dim,
            f"features: width {x.shape[1]}, this client's filters take {feature_dim}",
        )
    elif isinstance(reply, PathsRes):
        _paths(reply.paths, n, limits, "paths")
    elif isinstance(reply, DistillRes):  # LogitDistillRes too
        for name in ("loss_before", "loss_after"):
            _loss(reply, name, n, limits)
        _vector(reply, "margin", n)
        _count("num_pairs", reply.num_pairs, limits)
        t = reply.trained  # empty: not reported (every pick trained); else one 0/1 per id
        _need(
            t.size == 0 or (t.shape == (n,) and bool(np.isin(t, (0, 1)).all())),
            f"trained: {t.dtype}{t.shape}, expected empty or one 0/1 per id ({n})",
        )
        if isinstance(reply, LogitDistillRes):
            _need(0 <= reply.num_distilled <= n, f"num_distilled {reply.num_distilled} > {n}")
    elif isinstance(reply, ScoreRes):
        _loss(reply, "nll_cond", n, limits)
        _loss(reply, "nll_uncond", n, limits)
    elif isinstance(reply, EvaluateRes):
        _count("num_samples", reply.num_samples, limits)
        _need(0.0 <= reply.accuracy <= 1.0, f"accuracy {reply.accuracy} outside [0, 1]")
        _groups(reply.groups)
        bits = reply.correct
        _need(
            not bits or (len(bits) == reply.num_samples and set(bits) <= {"0", "1"}),
            f"correct: not one '0'/'1' per test sample ({reply.num_samples})",
        )
    elif isinstance(reply, WeightsRes):
        _count("num_samples", reply.num_samples, limits)
        _weights(reply.names, reply.shapes, reply.flat)
        if expect.weight_names is not None:
            layout = (tuple(reply.names), tuple(tuple(s) for s in json.loads(reply.shapes)))
            _need(
                layout == (expect.weight_names, expect.weight_shapes),
                "weights: parameter names or shapes differ from the server's SLM",
            )
    elif isinstance(reply, LogitsRes):
        _topk(reply, n, int(ins.top_k), limits)  # type: ignore[attr-defined]
        idx = reply.indices
        _need(
            expect.vocab_rows is None or idx.size == 0 or int(idx.max()) < expect.vocab_rows,
            f"indices: token ids up to {int(idx.max()) if idx.size else 0}, the server's "
            f"vocabulary has {expect.vocab_rows}",
        )
        _need(
            expect.vocab is None or reply.vocab == expect.vocab,
            f"vocabulary {reply.vocab[:16]!r} differs from the server's {expect.vocab!r:.18}",
        )
    # SetWeightsRes: num_params is an int (checked with the fields)


MAX_GROUP_KEYS = 16  # grouping keys of an evaluation's counts (domain, num_steps, kind)
MAX_GROUP_VALUES = 1024  # values per key
MAX_LABEL_CHARS = 128  # characters of one key or value name


def _groups(text: str) -> None:
    """``{key: {value: [correct, n]}}`` (lada.eval.accuracy.group_counts), 0 <= correct <= n."""
    try:
        groups = json.loads(text)
    except (ValueError, RecursionError):
        raise _Bad("groups: not JSON") from None
    _need(
        isinstance(groups, dict) and all(isinstance(g, dict) for g in groups.values()),
        "groups: not {key: {value: [correct, n]}}",
    )
    _need(len(groups) <= MAX_GROUP_KEYS, f"groups: {len(groups)} keys (at most {MAX_GROUP_KEYS})")
    for key, g in groups.items():
        _need(len(g) <= MAX_GROUP_VALUES, f"groups: {len(g)} values of {key!r:.40}")
        labels = [key, *g]
        _need(
            all(len(x) <= MAX_LABEL_CHARS and x.isprintable() for x in labels),
            f"groups: a name longer than {MAX_LABEL_CHARS} characters or with control characters",
        )
        _need(
            key != "num_steps" or all(x.isdigit() and x.isascii() for x in g),
            "groups: num_steps labels must be numbers",
        )
        for cn in g.values():
            ok = isinstance(cn, list) and len(cn) == 2 and all(_is_int(v) for v in cn)
            _need(ok and 0 <= cn[0] <= cn[1], f"groups: bad counts {cn!r:.80}")


def _weights(names: list[str], shapes_json: str, flat: np.ndarray) -> None:
    _need(len(set(names)) == len(names), "names: duplicates")
    try:
        shapes = json.loads(shapes_json)
    except (ValueError, RecursionError):
        raise _Bad("shapes: not JSON") from None
    _need(
        isinstance(shapes, list)
        and len(shapes) == len(names)
        and all(isinstance(s, list) and all(_is_int(d) and d >= 0 for d in s) for s in shapes),
        "shapes: not one list of sizes per name",
    )
    total = sum(math.prod(s) for s in shapes)
    _need(flat.dtype.kind == "f" and flat.shape == (total,), f"flat: {flat.dtype}{flat.shape}")


# ---- instructions (client side) ---------------------------------------------------------


def _check_instruction(
    task: Task, ins: Any, limits: LimitsConfig, public_ids: Collection[str]
) -> None:
    expected = INSTRUCTIONS[task]
    _need(type(ins) is expected, f"expected a {expected.__name__}, got {type(ins).__name__}")
    _check_fields(ins, limits)
    _need(ins.round >= 0, f"round {ins.round} < 0")
    if hasattr(ins, "ids"):
        ids = list(ins.ids)
        _need(len(set(ids)) == len(ids), "ids: duplicates")
        unknown = [i for i in ids if i not in public_ids]
        _need(
            not unknown, f"ids: {len(unknown)} not in this client's public set, e.g. {unknown[:1]}"
        )
        n = len(ids)
    if isinstance(ins, DistillIns | LogitDistillIns):
        if isinstance(ins, LogitDistillIns) and not ins.teacher_paths:
            pass  # FedMKT alone: logits only, no paths
        else:
            _paths(ins.teacher_paths, n, limits, "teacher_paths")
    if isinstance(ins, ScoreIns):
        _paths(ins.paths, n, limits, "paths")
    if isinstance(ins, LogitsIns):
        _need(1 <= ins.top_k <= limits.max_top_k, f"top_k {ins.top_k} outside 1..max_top_k")
    if isinstance(ins, LogitDistillIns):
        _topk(ins, n, limits.max_top_k, limits)
    if isinstance(ins, SetWeightsIns):
        _weights(ins.names, ins.shapes, ins.flat)
