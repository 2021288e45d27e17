"""Flower simulation engine (`engine: flower-sim`) against the in-process engine.

- equivalence: same seed, same tiny 2-round config -> the same metrics (within float tolerance)
  and exactly the same bytes per round, task and direction;
- faults: a client whose ClientApp raises mid-round, and one that is too slow, are reported as
  missing for that round; the round completes with the others and both are back next round;
  a client whose reply is corrupt (NaN losses) is rejected and reported, as in-process.

Each test runs Ray and trains tiny models for 2-3 rounds: minutes on 2 cores, hence slow.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

pytestmark = pytest.mark.slow

from lada.config import load_config  # noqa: E402
from lada.runner.run import run  # noqa: E402


@pytest.fixture(autouse=True)
def flower_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    monkeypatch.setenv("FLWR_DISABLE_UPDATE_CHECK", "1")
    monkeypatch.setenv("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr-home"))
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


# what may differ between engines: wall-clock times only
_TIMING_KEYS = {"seconds"}


def _close(a: Any, b: Any, path: str, problems: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            problems.append(f"{path}: keys {sorted(set(a) ^ set(b))}")
            return
        for k in a:
            if k not in _TIMING_KEYS:
                _close(a[k], b[k], f"{path}.{k}", problems)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            problems.append(f"{path}: {len(a)} != {len(b)} items")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]", problems)
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            problems.append(f"{path}: {a} != {b}")
        elif not (
            (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)
        ):
            problems.append(f"{path}: {a} != {b}")
    elif a != b:
        problems.append(f"{path}: {a!r} != {b!r}")


def test_flower_simulation_matches_inprocess(tmp_path: Path, tiny_overrides: list[str]) -> None:
    ref = run(load_config(None, tiny_overrides), tmp_path / "inprocess")
    sim = run(load_config(None, [*tiny_overrides, "engine=flower-sim"]), tmp_path / "flower")

    assert [r["round"] for r in sim] == [0, 1, 2] == [r["round"] for r in ref]
    problems: list[str] = []
    for a, b in zip(ref, sim, strict=True):
        _close(a, b, f"round {a['round']}", problems)
    assert not problems, "\n".join(problems[:20])
    assert all(not r["missed"] for r in sim)
    assert sim[-1]["bytes"]["up"] > 0 and sim[-1]["bytes"]["down"] > 0

    # the same run directory layout, each client's state where the in-process engine keeps it
    for name in ("config.yaml", "metrics.jsonl", "state.json", "summary.json"):
        assert (tmp_path / "flower" / name).exists(), name
    for k in range(3):
        state = tmp_path / "flower" / "clients" / f"client_{k}"
        assert sorted(p.name for p in state.glob("round_*.safetensors")) == [
            "round_000.safetensors",
            "round_001.safetensors",
            "round_002.safetensors",
        ]
        assert not (state / ".flower_working").exists()  # mid-round state is cleaned up
    summary = json.loads((tmp_path / "flower" / "summary.json").read_text())
    assert summary["completed_rounds"] == 2 and summary["missed"] == {}


def test_flower_simulation_faults(tmp_path: Path, tiny_overrides: list[str]) -> None:
    cfg = load_config(
        None,
        [
            *tiny_overrides,
            "engine=flower-sim",
            "rounds=2",
            "eval.initial=false",
            # client 1 crashes in round 1's embed; client 2 is too slow in round 1's generate.
            # Client 2's timeout covers every task of it, timed from when the server sends it,
            # so round 1's local_train pays the Ray actors' cold start (imports, loading the
            # clients) and waits behind another client's (3 clients share 2 actors): 129 s on
            # a 2-core box busy with another job (a 45 s timeout failed there). 150 s leaves
            # room for that; the delay outlasts it by 15 s.
            "faults.0.client=1",
            "faults.0.round=1",
            "faults.0.task=embed",
            "faults.0.kind=raise",
            "faults.1.client=2",
            "faults.1.round=1",
            "faults.1.task=generate",
            "faults.1.kind=delay",
            "faults.1.delay_s=165",
            "clients.2.timeout_s=150",
            # client 0 sends NaN losses in round 2's distill: the server rejects the reply
            "faults.2.client=0",
            "faults.2.round=2",
            "faults.2.task=distill",
            "faults.2.kind=corrupt",
            "faults.2.corruption=nan",
        ],
    )
    records = run(cfg, tmp_path / "run")
    assert [r["round"] for r in records] == [1, 2]
    r1, r2 = records
    assert set(r1["missed"]) == {"1", "2"}
    assert "embed" in r1["missed"]["1"] and "InjectedFault" in r1["missed"]["1"]
    assert r1["missed"]["2"].startswith("generate: timeout"), (r1["missed"], r1["seconds"])
    # neither got an allocation: client 1's embed failed, and client 2 timed out in the generate
    # that writes its teacher paths for P before the filters score (the teachability mask)
    assert set(r1["slm_accuracy"]) == {"0"} and set(r1["selected"]) == {"0"}
    # both are back in round 2; client 0's corrupt reply is rejected there, as in-process
    assert set(r2["missed"]) == {"0"} and set(r2["rejected"]) == {"0"}
    assert r2["rejected"]["0"].startswith("distill: ") and "non-finite" in r2["rejected"]["0"]
    assert "S" not in r2["mean_reward"].get("0", {}) and "S" in r2["mean_reward"]["1"]
    assert set(r2["slm_accuracy"]) == {"1", "2"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["missed"]) == {"0", "1", "2"} and set(summary["rejected"]) == {"0"}
    assert [m["round"] for m in summary["missed"]["1"]] == [1]


def test_flower_simulation_resume(tmp_path: Path, tiny_overrides: list[str]) -> None:
    """A run stopped after round 1 and resumed on Flower ends where an unbroken one does."""
    over = [*tiny_overrides, "engine=flower-sim", "eval.initial=false"]
    full = run(load_config(None, over), tmp_path / "full")
    run(load_config(None, [*over, "rounds=1"]), tmp_path / "cut")
    # the same run, asked for 2 rounds: rewrite its config and resume
    cfg_path = tmp_path / "cut" / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace("rounds: 1", "rounds: 2"))
    resumed = run(None, tmp_path / "cut", resume=True)
    problems: list[str] = []
    for a, b in zip(full, resumed, strict=True):
        _close(a, b, f"round {a['round']}", problems)
    assert not problems, "\n".join(problems[:20])
