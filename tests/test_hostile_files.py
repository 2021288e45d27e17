"""Broken data files: each gives a DataError naming file:line:field, or a reported
skip; a file that yields no sample is an error in both modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lada.data.errors import DataError
from lada.data.loaders import load_dataset

GOOD = {"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _line(record: dict) -> bytes:
    return (json.dumps(record) + "\n").encode()


@pytest.mark.parametrize("on_error", ["raise", "skip"])
@pytest.mark.parametrize("content", [b"", b"\n\n  \n\t\n"], ids=["empty", "blank_lines"])
def test_a_file_without_records_is_an_error(tmp_path: Path, content: bytes, on_error: str) -> None:
    p = _write(tmp_path / "d.jsonl", content)
    with pytest.raises(DataError, match="no records: the file is empty or has only blank") as e:
        load_dataset(p, "gsm8k", on_error=on_error)  # type: ignore[arg-type]
    assert e.value.path == str(p)


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    p = _write(tmp_path / "d.jsonl", b"\xef\xbb\xbf" + _line(GOOD) + _line(GOOD))
    assert [s.answer for s in load_dataset(p, "gsm8k")] == ["5", "5"]


def test_utf16_and_non_utf8_files_name_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path / "u16.jsonl", json.dumps(GOOD).encode("utf-16"))
    with pytest.raises(DataError, match=r"u16.jsonl:1: the file is UTF-16"):
        load_dataset(p, "gsm8k")
    p = _write(
        tmp_path / "latin.jsonl", _line(GOOD) + '{"question": "caf\xe9"}\n'.encode("latin-1")
    )
    with pytest.raises(DataError, match=r"latin.jsonl:2: invalid UTF-8 at byte"):
        load_dataset(p, "gsm8k")


def test_a_50_mb_line_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    huge = {"question": "x" * (50 * 2**20), "answer": "#### 1"}
    p = _write(tmp_path / "big.jsonl", _line(GOOD) + _line(huge) + _line(GOOD))
    with pytest.raises(DataError, match=r"big.jsonl:2: line longer than 1048576 bytes"):
        load_dataset(p, "gsm8k")
    skipped = load_dataset(p, "gsm8k", on_error="skip")
    assert len(skipped) == 2 and skipped.report.num_skipped == 1
    assert (
        skipped.report.skipped[0].line == 2 and "longer than" in skipped.report.skipped[0].message
    )


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    rec = {"id": "q1", "question": "Which?", "choices": ["a", "b"], "answer": "A"}
    p = _write(tmp_path / "mc.jsonl", _line(rec) + b"\n" + _line(rec))
    with pytest.raises(DataError, match=r"mc.jsonl:3: field 'id': duplicate id 'q1' \(first on"):
        load_dataset(p, "mc", id_field="id")


def test_every_record_skipped_is_an_error_that_names_the_first(tmp_path: Path) -> None:
    p = _write(tmp_path / "d.jsonl", _line({"question": "q"}) + b"[1]\n")
    with pytest.raises(DataError, match=r"all 2 skipped \(first: .*d.jsonl:1: field 'answer'"):
        load_dataset(p, "gsm8k", on_error="skip")
