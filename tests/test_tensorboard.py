"""report.to: [tensorboard] writes per-step losses, per-round accuracies, picks and rewards."""

from __future__ import annotations

from pathlib import Path

import pytest

from lada.config import ConfigError, load_config
from lada.runner.run import run
from tests.conftest import TINY


def test_a_run_logs_to_tensorboard(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = run(load_config(None, [*TINY, "rounds=1", "report.to=[tensorboard]"]), tmp_path / "r")
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    steps = [e.step for e in events.Scalars("loss/slm_0_local")]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 1
    # (the tiny LLM learns nothing in one round here: loss/llm_distill may be absent)
    assert {"loss/slm_1_distill", "picks/0_S", "reward/0_S"} <= tags
    acc = events.Scalars("accuracy/slm_2")
    assert [e.step for e in acc] == [0, 1]
    assert acc[1].value == pytest.approx(records[1]["slm_accuracy"]["2"])
    assert events.Scalars("picks/1_L")[0].value == records[1]["selected"]["1"]["L"]


def test_report_to_accepts_known_loggers_only() -> None:
    with pytest.raises(ConfigError, match="report.to"):
        load_config(None, ["report.to=[wandb]"])
    assert load_config().report.to == []
