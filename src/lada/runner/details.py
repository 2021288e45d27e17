"""Per-round details the bench's statistics need (ours), next to metrics.jsonl:

questions/round_NNN.json  {"slm": {k: "0110…"}, "llm": {k: "…"}, "ids_sha1": {k: sha1}}:
                          per-question correctness in test-set order (the SLM of client k on
                          its test set; the LLM on client k's test set) and a fingerprint of
                          that test set's ids, so that two runs pair up question by question
learning/round_NNN.json   {k: {"S"|"L": {"ids", "loss_before", "loss_after", "margin"}}}:
                          each learner's losses on its picks (S: SLM k learning from the LLM;
                          L: the LLM learning from SLM k), for every allocation (LaDa's filters
                          and the baselines alike), so that realised rewards can be compared
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lada.utils.files import atomic_write_text


def write_round_details(run_dir: Path, t: int, report: Any) -> None:
    """questions/round_NNN.json (when anything was evaluated) and learning/round_NNN.json
    (when anything was learnt from picks) for round ``t``'s :class:`RoundReport`."""
    if report.slm_eval or report.llm_eval:
        _write(
            run_dir / "questions" / f"round_{t:03d}.json",
            {
                "slm": {str(k): v.get("correct", "") for k, v in sorted(report.slm_eval.items())},
                "llm": {str(k): v.get("correct", "") for k, v in sorted(report.llm_eval.items())},
                "ids_sha1": {
                    str(k): v.get("ids_sha1", "") for k, v in sorted(report.llm_eval.items())
                },
            },
        )
    if report.learning:
        _write(
            run_dir / "learning" / f"round_{t:03d}.json",
            {str(k): v for k, v in sorted(report.learning.items())},
        )


def _write(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, separators=(",", ":")) + "\n")
