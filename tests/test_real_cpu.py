"""configs/real-cpu.yaml: real checkpoints in both roles (SmolLM2-135M and depth-pruned copies)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lada.config import load_config
from lada.config.validate import validate

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "real-cpu.yaml"


def test_real_cpu_config_is_valid_and_uses_real_models() -> None:
    cfg = load_config(CONFIG)
    validate(cfg)
    assert cfg.server.model == "smollm2-135m"
    assert [c.model for c in cfg.clients] == ["smollm2-135m-L10", "smollm2-135m-L15"]
    assert all(m.lora is not None and m.dtype == "auto" for m in [cfg.server, *cfg.clients])
    # the LLM learns the world's general facts first (premise 2); the SLMs start as fetched
    assert cfg.server.warmup is not None and cfg.server.warmup.samples == 256
    assert all(c.warmup is None for c in cfg.clients)


@pytest.mark.slow
def test_real_cpu_config_runs_and_learns(tmp_path: Path) -> None:
    """The whole config (about 20 min on 2 idle cores): it completes and both sides learn."""
    from lada.runner.run import run

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    records = run(load_config(CONFIG), tmp_path / "run")
    assert [r["round"] for r in records] == [0, 1, 2, 3, 4]
    assert all(not r["missed"] for r in records)
    first, last = records[0], records[-1]
    assert last["slm_accuracy_mean"] > first["slm_accuracy_mean"]
    assert last["llm_accuracy_mean"] > first["llm_accuracy_mean"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["completed_rounds"] == 4
