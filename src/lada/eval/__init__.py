"""Evaluation: greedy path generation, answer extraction and grouped accuracy."""

from lada.data.extract import canonical_number, extract_answer, is_correct
from lada.eval.accuracy import (
    EvalResult,
    accuracy_table,
    evaluate,
    group_counts,
    render_table,
    score_paths,
)
from lada.eval.generate import generate_paths

__all__ = [
    "EvalResult",
    "accuracy_table",
    "canonical_number",
    "evaluate",
    "extract_answer",
    "generate_paths",
    "group_counts",
    "is_correct",
    "render_table",
    "score_paths",
]
