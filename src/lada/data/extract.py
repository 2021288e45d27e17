"""Final-answer extraction from generated reasoning paths, and answer comparison.

The answer is read from the *last* ``Answer:`` line. Multiple choice: a letter A-H
(``B``, ``(B)``, ``B)``, ``B.``, ``B: 12``). Numbers: canonical form (``"1,200"`` -> ``"1200"``,
``"5.0"`` -> ``"5"``, ``"-3"``, ``"2.5"``); without an ``Answer:`` line, GSM8K's ``#### N``
and then the last number in the text are used.
"""

from __future__ import annotations

import math
import re

from lada.data.sample import ANSWER_PREFIX, LETTERS

_LETTER = re.compile(rf"^\s*\(?([{LETTERS}])(?:\)|\.|:|,|\s|$)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_GSM8K = re.compile(r"####\s*(-?[\d,]*\.?\d+)")


def _answer_line(text: str) -> str | None:
    pos = text.rfind(ANSWER_PREFIX)
    if pos < 0:
        return None
    return text[pos + len(ANSWER_PREFIX) :].split("\n", 1)[0]


def canonical_number(text: str) -> str | None:
    """``"1,200.50"`` -> ``"1200.5"``, ``"5.0"`` -> ``"5"``, ``"-0"`` -> ``"0"``; None if not a number."""
    cleaned = text.replace(",", "").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10f}".rstrip("0").rstrip(".")


def _first_number(text: str) -> str | None:
    match = _NUMBER.search(text.replace("$", ""))
    return canonical_number(match.group()) if match else None


def extract_answer(text: str, answer_type: str) -> str | None:
    """The predicted answer in canonical form, or None when none can be read."""
    line = _answer_line(text)
    if answer_type == "mc":
        if line is None:
            return None
        match = _LETTER.match(line)
        return match.group(1) if match else None
    if answer_type != "number":
        raise ValueError(f"unknown answer_type {answer_type!r}")
    if line is not None:
        return _first_number(line)
    gsm = _GSM8K.findall(text)
    if gsm:
        return canonical_number(gsm[-1])
    numbers = _NUMBER.findall(text.replace("$", ""))
    return canonical_number(numbers[-1]) if numbers else None


def is_correct(pred: str | None, gold: str, answer_type: str, tol: float = 1e-6) -> bool:
    """Letters compare exactly (case-insensitive); numbers within ``tol`` (absolute or relative)."""
    if pred is None:
        return False
    if answer_type == "mc":
        return pred.strip().upper() == gold.strip().upper()
    p, g = canonical_number(pred), canonical_number(gold)
    if p is None or g is None:
        return False
    return math.isclose(float(p), float(g), rel_tol=tol, abs_tol=tol)
