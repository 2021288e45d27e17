"""`lada show` and summary.json: base -> final changes, PNG curves, whole model names."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from lada.cli import main
from lada.config import load_config, to_dict
from lada.runner.report import run_summary
from lada.runner.show import change_rows

LONG = "Qwen/Qwen2.5-0.5B-Instruct-a-rather-long-local-name"


def _record(t: int, slm: list[float], llm: list[float], missed: dict[str, str] | None = None):
    sel = {} if t == 0 else {str(k): {"S": 5 + k, "L": 3} for k in range(len(slm))}
    rew = {} if t == 0 else {str(k): {"S": 0.5 + 0.1 * t, "L": 0.4} for k in range(len(slm))}
    missed = missed or {}
    slm_acc = {str(k): a for k, a in enumerate(slm) if str(k) not in missed}
    return {
        "round": t,
        "slm_accuracy": slm_acc,
        "slm_accuracy_mean": sum(slm_acc.values()) / len(slm_acc),
        "llm_accuracy": {str(k): a for k, a in enumerate(llm)},
        "llm_accuracy_mean": sum(llm) / len(llm),
        "client_domains": {str(k): ["pharma", "law"] for k in range(len(slm))},
        "selected": sel,
        "mean_reward": rew,
        "missed": missed,
        "seconds": {"total": 10.0 + t},
        "bytes": {"up": 100, "down": 200},
    }


def make_run(run_dir: Path) -> list[dict]:
    cfg = load_config(None, [f"server.model={LONG}", "rounds=2"])
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    records = [
        _record(0, [0.10, 0.20, 0.30], [0.043, 0.05, 0.04]),
        _record(1, [0.15, 0.20, 0.35], [0.040, 0.05, 0.03], {"1": "timeout after 5s"}),
        _record(2, [0.25, 0.18, 0.40], [0.033, 0.04, 0.02]),
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_show_prints_changes_and_writes_pngs(tmp_path: Path, capsys) -> None:
    make_run(tmp_path / "run")
    assert main(["show", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert LONG in out  # the LLM's whole name, not clipped
    assert "+15.0" in out and "-2.0" in out  # SLM 0: 10 -> 25 %, SLM 1: 20 -> 18 %
    assert "-1.0" in out and "-1.3" in out  # LLM on client 0: 4.3 -> 3.3 %; its mean: -1.3
    assert "client 1 missed round 1" in out and "timeout after 5s" in out
    for name in ("accuracy.png", "selections.png", "rewards.png"):
        data = (tmp_path / "run" / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_show_change_rows_every_model() -> None:
    cfg = to_dict(load_config(None, [f"server.model={LONG}"]))
    records = [
        _record(0, [0.1, 0.2, 0.3], [0.043, 0.05, 0.04]),
        _record(2, [0.25, 0.18, 0.4], [0.033, 0.04, 0.02]),
    ]
    rows = change_rows(cfg, records)
    assert [r["who"] for r in rows] == ["SLM 0", "SLM 1", "SLM 2", "LLM", "LLM", "LLM", "LLM"]
    llm_mean = rows[3]
    assert llm_mean["model"] == LONG and llm_mean["test set"] == "mean over clients"
    assert round(100 * (llm_mean["final"] - llm_mean["base"]), 1) == -1.3


def test_show_refuses_a_folder_without_a_run(tmp_path: Path, capsys) -> None:
    assert main(["show", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_summary_has_base_final_change_time_and_missed(tmp_path: Path) -> None:
    records = make_run(tmp_path / "run")
    cfg = load_config(tmp_path / "run" / "config.yaml")
    s = run_summary(records, cfg)
    assert s["base"]["slm_accuracy"] == {"0": 0.10, "1": 0.20, "2": 0.30}
    assert s["final"]["slm_accuracy"]["0"] == 0.25
    assert abs(s["change"]["slm_accuracy"]["0"] - 0.15) < 1e-12
    assert abs(s["change"]["llm_accuracy_mean"] - (0.031 - 0.04433333333333333)) < 1e-9
    assert s["missed"] == {"1": [{"round": 1, "reason": "timeout after 5s"}]}
    assert s["rounds_every_client_missed"] == []
    assert s["seconds_total"] == 33.0 and s["completed_rounds"] == 2
    assert s["models"]["server"] == LONG and s["models"]["clients"]["0"] == "slm-xs"
