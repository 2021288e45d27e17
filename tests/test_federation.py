"""The federated round end to end on the tiny config: metrics, privacy, faults, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lada.config import FaultSpec, load_config
from lada.engines.inprocess import InProcessEngine
from lada.federation.protocol import (
    INSTRUCTIONS,
    RESULTS,
    DistillRes,
    EmbedRes,
    EvaluateRes,
    PathsRes,
    Task,
    decode,
    encode,
)
from lada.runner.run import build_client, build_server, drive, prepare_run_dir, run
from lada.runner.setup import load_run_data

VOLATILE = {"seconds"}


def _stable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in VOLATILE}


def test_payloads_roundtrip_through_the_wire_format() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    cases = [
        EmbedRes(ids=["a", "b"], features=arr),
        PathsRes(ids=["a"], paths=["x = 1*2 = 2\nAnswer: B"]),
        DistillRes(
            ids=["a", "b"],
            loss_before=arr[0, :2].copy(),
            loss_after=arr[1, :2].copy(),
            margin=np.zeros(2, np.float32),
            num_pairs=1,
        ),
        EvaluateRes(num_samples=3, accuracy=0.5, groups="{}"),
    ]
    for p in cases:
        back = type(p).from_record(decode(encode(p.to_record())))
        for name, v in vars(p).items():
            got = getattr(back, name)
            if isinstance(v, np.ndarray):
                assert got.dtype == v.dtype and np.array_equal(got, v)
            else:
                assert got == v
    assert set(INSTRUCTIONS) == set(RESULTS) == set(Task)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    from conftest import TINY

    out = tmp_path_factory.mktemp("run") / "r"
    records = run(load_config(None, TINY), out)
    return out, records


def test_run_writes_metrics_and_run_dir(tiny_run: tuple[Path, list[dict]]) -> None:
    out, records = tiny_run
    assert [r["round"] for r in records] == [0, 1, 2]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [_stable(x) for x in lines] == [_stable(r) for r in records]
    r1 = records[1]
    for key in (
        "slm_accuracy",
        "llm_accuracy",
        "llm_accuracy_by_domain",
        "selected",
        "mean_reward",
        "bytes",
        "seconds",
    ):
        assert key in r1, key
    assert set(r1["slm_accuracy"]) == {"0", "1", "2"}
    assert set(r1["llm_accuracy_by_domain"]) == {"market", "pharmacy", "workshop"}
    # round 1 is the k-means cold start among the candidates: each direction picks within the
    # budget of 6, nothing only where the teacher teaches nothing (all 30 samples masked)
    for rec in records[1:]:
        for k in "012":
            for d in ("S", "L"):
                n, masked = rec["selected"][k][d], rec["masked"][k][d]
                assert 0 <= masked <= 30 and n <= min(6, 30 - masked)
                assert (n == 0) == (masked == 30), (k, d, n, masked)
                key = "slm_pairs" if d == "S" else "llm_pairs"
                assert isinstance(rec["distill"][k][key], int), (k, key)
            assert r1["masked"][k]["S"] == 15  # the LLM teaches the 15 labelled questions only
            assert 0.0 < r1["mean_reward"][k]["S"] < 1.0
    assert r1["bytes"]["up"] > 0 and r1["bytes"]["down"] > 0
    assert {"local_train", "embed", "generate", "distill", "evaluate"} <= set(
        r1["bytes"]["by_task"]
    )
    assert records[2]["filter_mode"]["0"]["S"] == "bandit"
    assert json.loads((out / "state.json").read_text()) == {"last_complete_round": 2}
    assert (out / "checkpoints" / "round_002" / "filters.pt").exists()
    assert (out / "clients" / "client_1" / "round_002.safetensors").exists()
    sel = json.loads((out / "selections" / "round_001.json").read_text())
    assert len(sel["0"]["S"]) == r1["selected"]["0"]["S"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missed"] == {} and summary["completed_rounds"] == 2
    # what ran: the speed path, its kernels, the generator, each role's dtype, CPU and torch
    runtime = summary["runtime"]
    assert (runtime["accel"], runtime["generator"]) == ("native", "auto")
    assert set(runtime["kernels"]) == {"decode_step", "dropout"}
    assert runtime["models"]["server"] == {"model": "llm-xs", "dtype": "float32"}
    assert {"cpu", "cpu_flags", "cpu_capability", "torch"} <= set(runtime)


def test_run_saves_per_question_results_and_per_pick_losses(
    tiny_run: tuple[Path, list[dict]],
) -> None:
    """questions/ and learning/ (lada.runner.details): what the bench's paired CIs and filter
    lift read. The bits agree with the accuracies; the losses cover each learner's picks."""
    out, records = tiny_run
    for rec in records:
        q = json.loads((out / "questions" / f"round_{rec['round']:03d}.json").read_text())
        for side in ("slm", "llm"):
            for k, acc in rec[f"{side}_accuracy"].items():
                bits = q[side][k]
                assert len(bits) == 8 and set(bits) <= {"0", "1"}
                assert bits.count("1") / len(bits) == pytest.approx(acc)
        assert set(q["ids_sha1"]) == {"0", "1", "2"} and all(
            len(h) == 40 for h in q["ids_sha1"].values()
        )
    assert not (out / "learning" / "round_000.json").exists()  # nothing learnt before round 1
    learn = json.loads((out / "learning" / "round_001.json").read_text())
    sel = json.loads((out / "selections" / "round_001.json").read_text())
    for k in "012":
        for d in ("S", "L"):
            got = learn.get(k, {}).get(d, {"ids": [], "loss_before": [], "loss_after": [],
                                           "margin": []})  # fmt: skip
            assert sorted(got["ids"]) == sorted(sel[k][d])
            n = len(got["ids"])
            assert len(got["loss_before"]) == len(got["loss_after"]) == len(got["margin"]) == n


def test_filter_numbers_in_metrics(tiny_run: tuple[Path, list[dict]]) -> None:
    """Per filter and round: score spread within the round (> 0 once the bandit scores), the
    number selected, rewarded and left untrained, the rewards' mean, spread and drift."""
    _, records = tiny_run
    r1, r2 = records[1], records[2]
    checked = 0
    for k in r2["filter"]:
        for d in ("S", "L"):
            if not (r1["selected"][k][d] and r2["selected"][k][d]):
                assert r1["masked"][k][d] == 30 or r2["masked"][k][d] == 30  # nothing to teach
                continue
            f1, f2 = r1["filter"][k][d], r2["filter"][k][d]
            assert f1["score_std"] is None and f1["n"] > 0  # cold start, rewarded
            # every pick is a candidate its teacher taught: all trained, all rewarded
            assert f1["n"] == r1["selected"][k][d] and f1["n_untrained"] == 0
            assert f1["n_abstained"] == 0 and f1["masked"] == r1["masked"][k][d]
            assert r2["filter_mode"][k][d] == "bandit"
            assert f2["score_std"] > 0 or r2["masked"][k][d] >= 29, f2
            assert f2["n_selected"] == r2["selected"][k][d]
            for key in ("mean_reward", "reward_std", "reward_drift", "target_std", "n_abstained"):
                assert f2[key] is not None and np.isfinite(f2[key]), (key, f2)
            checked += 1
    assert checked >= 3  # the SLM side of every client at least


def test_existing_run_dir_is_not_overwritten(tiny_run: tuple[Path, list[dict]]) -> None:
    from lada.runner.run import RunDirError

    out, _ = tiny_run
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match="already holds a run"):
        run(load_config(None, ["rounds=1"]), out)
    assert (out / "metrics.jsonl").read_text() == before


def test_no_private_sample_leaves_a_client(tmp_path: Path, tiny_overrides: list[str]) -> None:
    """Everything a client sends is audited: no private id, question or rationale in it."""
    cfg, last = prepare_run_dir(
        tmp_path / "r", load_config(None, tiny_overrides + ["rounds=1"]), False
    )
    data = load_run_data(cfg, tmp_path / "r")
    public_text = {s.prompt() for s in data.public} | {s.target() for s in data.public}
    secrets: list[str] = []
    for k in range(len(cfg.clients)):
        for s in data.train[k] + data.test[k]:
            secrets.append(s.id)
            if s.prompt() not in public_text:
                secrets.append(s.question)
            if s.target() not in public_text and s.num_steps >= 3:
                secrets.append(s.target())
    sent_up: list[str] = []

    def tap(round_idx: int, task: Task, direction: str, k: int, wire: bytes) -> None:
        if direction == "up":
            sent_up.append(wire.decode("utf-8", errors="replace"))

    clients = {k: build_client(cfg, data, k, tmp_path / "r" / f"c{k}") for k in range(3)}
    engine = InProcessEngine(clients, tap=tap)
    drive(cfg, tmp_path / "r", build_server(cfg, data), engine, last, data.domains)
    assert len(sent_up) >= 3 * 5 and len(secrets) > 100
    blob = "\n".join(sent_up)
    leaked = [s for s in secrets if s in blob]
    assert leaked == []
    # the audit reads strings off the wire: a private text sent up would be caught
    x = data.train[0][0]
    wire = encode(PathsRes(ids=[x.id], paths=[x.question]).to_record())
    assert x.question in wire.decode("utf-8") and x.id in wire.decode("utf-8")


def test_a_failing_client_is_reported_and_the_round_goes_on(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    cfg = load_config(None, tiny_overrides)
    cfg.faults = [FaultSpec(client=1, round=1, task="distill", kind="raise")]
    records = run(cfg, tmp_path / "r")
    r1, r2 = records[1], records[2]
    assert "1" in r1["missed"] and "injected fault" in r1["missed"]["1"]
    assert set(r1["slm_accuracy"]) == {"0", "2"}  # client 1 skipped the rest of round 1
    assert "S" not in r1["mean_reward"].get("1", {})
    assert r2["missed"] == {} and set(r2["slm_accuracy"]) == {"0", "1", "2"}  # it rejoins
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["missed"]["1"][0]["round"] == 1


def test_a_slow_client_times_out(tmp_path: Path, tiny_overrides: list[str]) -> None:
    cfg = load_config(None, tiny_overrides + ["rounds=1", "clients.2.timeout_s=0.5"])
    cfg.faults = [FaultSpec(client=2, round=1, task="local_train", kind="delay", delay_s=1.0)]
    records = run(cfg, tmp_path / "r")
    assert "timeout" in records[1]["missed"]["2"]
    assert set(records[1]["slm_accuracy"]) == {"0", "1"}


def test_killed_run_resumes_to_the_same_metrics(tmp_path: Path, tiny_overrides: list[str]) -> None:
    """kill -9 a real `lada run` process mid-run, resume it, compare with an unbroken run."""
    args = tiny_overrides + ["rounds=3"]
    reference = run(load_config(None, args), tmp_path / "ref")

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "lada.cli", "run", "--out", str(out), *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            state = out / "state.json"
            if state.exists() and json.loads(state.read_text())["last_complete_round"] >= 1:
                time.sleep(1.5)  # now well inside round 2
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    last = json.loads((out / "state.json").read_text())["last_complete_round"]
    assert last < 3
    resumed = run(None, out, resume=True)
    assert [r["round"] for r in resumed] == [0, 1, 2, 3]
    for a, b in zip(resumed, reference, strict=True):
        assert _stable(a) == _stable(b), f"round {a['round']} differs after resume"
