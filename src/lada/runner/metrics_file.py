"""Reading a run's ``metrics.jsonl`` (one JSON record per committed round; round 0 = before
training). The one reader, used by resume (:mod:`lada.runner.run`), `lada show`, the Flower engine,
the bench tables and plots, and benchmarks/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: str | Path, *, stop_at_cut_line: bool = False) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl`` in order; [] when the file does not exist.

    Strict (default): blank lines are skipped and a line that is not JSON is an error naming the
    file and line. ``stop_at_cut_line`` (resume): the first line that is not JSON, e.g. one cut by
    a kill, ends the records; it and every line after it are dropped.
    """
    p = Path(run_dir) / METRICS_FILE
    if not p.exists():
        return []
    records = []
    for number, line in enumerate(p.read_text().splitlines(), start=1):
        if not stop_at_cut_line and not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if stop_at_cut_line:
                break
            raise ValueError(f"{p}:{number}: not a JSON record: {e}") from None
    return records
