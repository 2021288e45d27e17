"""metrics.jsonl: the one reader, strict for reports, forgiving of a cut last line on resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from lada.runner.metrics_file import read_metrics


def test_missing_file_is_no_records(tmp_path: Path) -> None:
    assert read_metrics(tmp_path) == []
    assert read_metrics(tmp_path, stop_at_cut_line=True) == []


def test_strict_skips_blank_lines_and_names_a_bad_line(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"round": 0}\n\n{"round": 1}\n{"round": 2, "x"\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:4: not a JSON record"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"round": 0}\n\n{"round": 1}\n')
    assert read_metrics(str(tmp_path)) == [{"round": 0}, {"round": 1}]


def test_resume_mode_drops_a_cut_line_and_what_follows(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"round": 0}\n{"round": 1}\n{"rou\n{"round": 3}\n')
    assert read_metrics(tmp_path, stop_at_cut_line=True) == [{"round": 0}, {"round": 1}]


def test_undefined_numbers_are_written_as_null() -> None:
    import json
    import math

    import numpy as np

    from lada.runner.report import finite_or_none

    rec = {"a": float("nan"), "b": [1.0, np.float32("inf"), (2, np.float64(0.5))], "c": {"d": None}}
    out = finite_or_none(rec)
    assert out == {"a": None, "b": [1.0, None, [2, 0.5]], "c": {"d": None}}
    text = json.dumps(out, allow_nan=False)  # strict JSON: would raise on NaN/inf
    assert json.loads(text) == out and not math.isnan(out["b"][2][1])
