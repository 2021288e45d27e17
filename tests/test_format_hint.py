"""A file read with the wrong --format names the right one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lada.data.errors import DataError
from lada.data.guess import guess_format
from lada.data.loaders import load_dataset

GSM8K = {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"}
MC = {"question": "Which is a fruit?", "choices": ["stone", "apple"], "answer": "B"}
LADA = {
    "id": "x1",
    "domain": "market",
    "question": "What is 3 + 4?",
    "answer": "7",
    "answer_type": "number",
    "steps": ["3 + 4 = 7"],
}


@pytest.mark.parametrize(
    ("record", "fmt", "right"),
    [(GSM8K, "lada", "gsm8k"), (MC, "lada", "mc"), (LADA, "gsm8k", "lada")],
)
def test_wrong_format_names_the_right_one(
    tmp_path: Path, record: dict, fmt: str, right: str
) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps(record) + "\n")
    with pytest.raises(DataError, match=rf"x.jsonl:1: .*use --format {right}"):
        load_dataset(p, fmt)
    assert guess_format(record) == right


def test_right_format_loads_without_hint(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps(LADA) + "\n")
    assert [s.answer for s in load_dataset(p, "lada")] == ["7"]
    assert guess_format({"question": "q", "answer": "7"}) is None
