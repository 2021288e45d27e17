"""Guess a JSONL record's format, for the hint when a file is read with the wrong one."""

from __future__ import annotations

from typing import Any

MC_CHOICE_KEYS = ("choices", "options", "endings")


def guess_format(record: dict[str, Any]) -> str | None:
    """``"gsm8k"`` (question + answer ending in ``#### N``), ``"mc"`` (question + a list of
    choices, no ``answer_type``), ``"lada"`` (has ``answer_type``), or None."""
    if "answer_type" in record:
        return "lada"
    answer = record.get("answer")
    if isinstance(answer, str) and "####" in answer and "question" in record:
        return "gsm8k"
    if any(isinstance(record.get(k), list | dict) for k in MC_CHOICE_KEYS):
        return "mc"
    return None


def format_hint(record: dict[str, Any], fmt: str) -> str | None:
    """A hint naming the right ``--format`` when ``record`` looks like another format."""
    guess = guess_format(record)
    if guess is None or guess == fmt:
        return None
    return (
        f"this line looks like {guess} data, not {fmt}: use --format {guess} "
        f"(in a run config: data.format: {guess}); formats: docs/run-dir.md"
    )
