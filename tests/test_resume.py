"""Resume keeps every override's meaning (relative paths included), and ``rounds=N`` continues
a finished run to the same metrics as an unbroken N-round run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from lada.cli import main
from lada.config import load_config
from lada.runner.metrics_file import read_metrics
from lada.runner.run import run
from tests.conftest import TINY

SRC = Path(__file__).resolve().parents[1] / "src"
SPLIT = ["num_clients=3", "train_per_client=24", "test_per_client=8", "public_size=30"]


def _lada(*args: str, cwd: Path, **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "lada.cli", *args]
    if kw.get("background"):
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _stable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "seconds"}


def test_a_killed_run_with_a_relative_data_dir_resumes_from_another_directory(
    tmp_path: Path,
) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    assert _lada("data", "make", "--out", "split", *SPLIT, cwd=work).returncode == 0
    args = [*TINY, "rounds=3", "data.dir=split"]
    proc = _lada("run", "--out", "r", *args, cwd=work, background=True)
    state = work / "r" / "state.json"
    try:
        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None:
            if state.exists() and json.loads(state.read_text())["last_complete_round"] >= 1:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert json.loads(state.read_text())["last_complete_round"] < 3
    recorded = yaml.safe_load((work / "r" / "config.yaml").read_text())
    assert recorded["data"]["dir"] == str(work / "split")  # absolute: it means the same anywhere

    # the same override again, from the same directory, is no change
    res = _lada("run", "--resume", "--out", "r", "--print-config", "data.dir=split", cwd=work)
    assert res.returncode == 0, res.stderr
    res = _lada("run", "--resume", "--out", str(work / "r"), cwd=elsewhere)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [r["round"] for r in read_metrics(work / "r")] == [0, 1, 2, 3]
    assert "3 training rounds" in res.stdout and "round 3/3: training; run ETA" in res.stdout
    assert not (elsewhere / "split").exists() and not (work / "r" / "split").exists()


def test_rounds_continues_a_finished_run_like_an_unbroken_one(tmp_path: Path) -> None:
    reference = run(load_config(None, [*TINY, "rounds=2"]), tmp_path / "ref")
    out = tmp_path / "c"
    run(load_config(None, [*TINY, "rounds=1"]), out)
    assert main(["run", "--resume", "--out", str(out), "rounds=2"]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["rounds"] == 2
    continued = read_metrics(out)
    assert [r["round"] for r in continued] == [0, 1, 2]
    for a, b in zip(continued, reference, strict=True):
        assert _stable(a) == _stable(b), f"round {a['round']} differs from the unbroken run"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["completed_rounds"] == 2


def test_print_config_prints_the_resolved_config_and_writes_nothing(tmp_path: Path) -> None:
    from lada.config import to_dict

    res = _lada("run", "--print-config", "rounds=2", "filter.budget=50", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load(res.stdout) == to_dict(
        load_config(None, ["rounds=2", "filter.budget=50"])
    )
    assert list(tmp_path.iterdir()) == []
