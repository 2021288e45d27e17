"""Loaders: GSM8K (real files), multiple choice, LaDa JSONL, errors and skip mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lada.data import (
    DataError,
    Sample,
    canonical_number,
    dataset_stats,
    load_dataset,
    load_gsm8k,
    load_lada_jsonl,
    load_mc_jsonl,
    read_jsonl_dicts,
    write_jsonl,
)

GSM8K = Path(__file__).resolve().parents[1] / "data" / "gsm8k"  # the copy in the repository


def _write(path: Path, records: list[object]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- GSM8K ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gsm8k_test() -> list[Sample]:
    return load_gsm8k(GSM8K / "test.jsonl")


def test_gsm8k_real_files(gsm8k_test: list[Sample]) -> None:
    train = load_gsm8k(GSM8K / "train.jsonl")
    assert len(train) == 7473 and len(gsm8k_test) == 1319
    assert train.report.num_skipped == 0 and train.report.num_loaded == 7473
    for s in [*train, *gsm8k_test]:
        assert s.answer_type == "number" and s.domain == "gsm8k" and s.choices is None
        assert s.answer == canonical_number(s.answer)
        assert s.steps and s.meta["num_steps"] == len(s.steps)
        assert not any("<<" in st or ">>" in st or "####" in st for st in s.steps)
    first = train[0]
    assert first.id == "gsm8k-train-00000" and first.answer == "72"
    assert first.steps == (
        "Natalia sold 48/2 = 24 clips in May.",
        "Natalia sold 48+24 = 72 clips altogether in April and May.",
    )
    assert first.target().endswith("\nAnswer: 72")
    assert gsm8k_test[0].id == "gsm8k-test-00000" and gsm8k_test[0].answer == "18"
    assert len({s.id for s in train}) == len(train)


def test_dataset_stats_gsm8k_test(gsm8k_test: list[Sample]) -> None:
    stats = dataset_stats(gsm8k_test)
    assert stats["num_samples"] == 1319
    assert stats["answer_types"] == {"number": 1319}
    assert stats["domains"] == {"gsm8k": 1319}
    assert sum(stats["num_steps"].values()) == 1319
    keys = list(stats["num_steps"])
    assert keys == [str(k) for k in sorted(map(int, keys))]
    json.dumps(stats)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,000", "1000"),
        ("3.50", "3.5"),
        ("-2", "-2"),
        ("5.0", "5"),
        (" 72 ", "72"),
        ("$5", "5"),
        ("-0.50", "-0.5"),
        ("1,234,567.80", "1234567.8"),
        ("0.0", "0"),
        (".5", "0.5"),
    ],
)
def test_canonical_number(text: str, expected: str) -> None:
    assert canonical_number(text) == expected


@pytest.mark.parametrize("text", ["abc", "1e5", "--1", "3/4", ""])
def test_canonical_number_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        canonical_number(text)


def test_gsm8k_small_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mini.jsonl",
        [
            {
                "question": "Q1?",
                "answer": "It costs 2*3 = <<2*3=6>>6.\n\nSo -6 + 2 = <<-6+2=-4>>-4\n#### -4",
            },
            {"question": "Q2?", "answer": "A decimal.\n#### 1,002.50"},
        ],
    )
    s1, s2 = load_gsm8k(path)
    assert s1.steps == ("It costs 2*3 = 6.", "So -6 + 2 = -4") and s1.answer == "-4"
    assert s2.answer == "1002.5" and s2.id == "gsm8k-mini-00001" and s2.meta == {"num_steps": 1}


# --- errors and skip mode ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "field", "needle"),
    [
        ('{"question": "Q", "answer": ', None, "invalid JSON"),
        ({"answer": "x\n#### 3"}, "question", "missing"),
        (
            {"question": "Q", "answer": "x\n#### abc"},
            "answer",
            "cannot parse number from '#### abc'",
        ),
        ({"question": "Q", "answer": "no final line"}, "answer", "####"),
        ({"question": 3, "answer": "x\n#### 3"}, "question", "expected str"),
    ],
)
def test_gsm8k_errors_name_file_line_field(
    tmp_path: Path, record: object, field: str | None, needle: str
) -> None:
    path = _write(tmp_path / "bad.jsonl", [{"question": "ok", "answer": "#### 1"}, record])
    with pytest.raises(DataError) as info:
        load_gsm8k(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 2, field)
    assert str(err).startswith(f"{path}:2: ") and needle in str(err)
    if field:
        assert f"field {field!r}" in str(err)


def test_error_str_format() -> None:
    err = DataError(
        "cannot parse number from '#### abc'", path="data/x.jsonl", line=12, field="answer"
    )
    assert str(err) == "data/x.jsonl:12: field 'answer': cannot parse number from '#### abc'"
    assert isinstance(err, ValueError)


def test_skip_mode_counts_and_reports(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mixed.jsonl",
        [
            {"question": "a", "answer": "#### 1"},
            "{not json",
            {"question": "b", "answer": "#### x"},
            "",
            {"question": "c", "answer": "#### 3"},
            {"answer": "#### 4"},
        ],
    )
    result = load_gsm8k(path, on_error="skip")
    assert [s.answer for s in result] == ["1", "3"]
    report = result.report
    assert report.num_loaded == 2 and report.num_skipped == 3
    assert [(r.line, r.field) for r in report.skipped] == [
        (2, None),
        (3, "answer"),
        (6, "question"),
    ]
    assert "skipped 3" in report.summary()
    with pytest.raises(DataError):
        load_gsm8k(path)


def test_read_jsonl_dicts_non_object(tmp_path: Path) -> None:
    path = _write(tmp_path / "arr.jsonl", [{"a": 1}, "[1, 2]"])
    with pytest.raises(DataError, match=r"arr.jsonl:2: expected a JSON object"):
        list(read_jsonl_dicts(path))


# --- multiple choice --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "choices",
    [
        ["12", "15", "9", "20"],
        {"A": "12", "B": "15", "C": "9", "D": "20"},
        {"(b)": "15", "a": "12", "D": "20", "C": "9"},
        ["A) 12", "B) 15", "C) 9", "D) 20"],
        ["(A) 12", "(B) 15", "(C) 9", "(D) 20"],
        ["A. 12", "B. 15", "C. 9", "D. 20"],
        "A) 12 B) 15 C) 9 D) 20",
        "(A) 12 (B) 15 (C) 9 (D) 20",
        "A. 12 B. 15 C. 9 D. 20",
        [12, 15, 9, 20],
    ],
)
def test_mc_choice_formats(tmp_path: Path, choices: object) -> None:
    path = _write(tmp_path / "mc.jsonl", [{"question": "Pick", "choices": choices, "answer": "B"}])
    (s,) = load_mc_jsonl(path)
    assert s.choices == ("12", "15", "9", "20") and s.answer == "B" and s.answer_type == "mc"
    assert s.prompt() == "Pick\n(A) 12 (B) 15 (C) 9 (D) 20\n"


@pytest.mark.parametrize("answer", ["C", "c", "(C)", "C)", 2, "nine"])
def test_mc_answer_formats(tmp_path: Path, answer: object) -> None:
    record = {"q": "Pick", "opts": ["ten", "eleven", "nine"], "gold": answer, "why": "a\n\nb"}
    path = _write(tmp_path / "mc.jsonl", [record])
    (s,) = load_mc_jsonl(
        path,
        question_field="q",
        choices_field="opts",
        answer_field="gold",
        rationale_field="why",
        domain="trivia",
    )
    assert s.answer == "C" and s.steps == ("a", "b") and s.domain == "trivia"
    assert s.id == "trivia-mc-00000" and s.target() == "a\nb\nAnswer: C"


def test_mc_labelled_strings_keep_unlabelled_text(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mc.jsonl",
        [
            {
                "question": "Who?",
                "choices": ["A. Lincoln", "Obama"],
                "answer": "Obama",
                "id": 7,
                "subject": "history",
                "rationale": ["one", "two"],
            },
        ],
    )
    (s,) = load_mc_jsonl(path, id_field="id", domain_field="subject", rationale_field="rationale")
    assert s.choices == ("A. Lincoln", "Obama") and s.answer == "B"
    assert (s.id, s.domain, s.steps) == ("7", "history", ("one", "two"))


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"question": "Q", "choices": ["a", "b"], "answer": "E"}, "answer"),
        ({"question": "Q", "choices": ["a", "b"], "answer": 5}, "answer"),
        ({"question": "Q", "choices": ["a", "b"], "answer": "zzz"}, "answer"),
        ({"question": "Q", "choices": ["a"], "answer": "A"}, "choices"),
        ({"question": "Q", "choices": [str(i) for i in range(9)], "answer": "A"}, "choices"),
        ({"question": "Q", "choices": "no labels here", "answer": "A"}, "choices"),
        ({"question": "Q", "choices": {"A": "x", "C": "y"}, "answer": "A"}, "choices"),
        ({"question": "Q", "answer": "A"}, "choices"),
        ({"question": "Q", "choices": ["a", "b"]}, "answer"),
    ],
)
def test_mc_bad_records(tmp_path: Path, record: dict[str, object], field: str) -> None:
    path = _write(tmp_path / "mc.jsonl", [record])
    with pytest.raises(DataError) as info:
        load_mc_jsonl(path)
    assert (info.value.line, info.value.field) == (1, field)
    assert str(info.value).startswith(f"{path}:1: field {field!r}")


# --- LaDa JSONL and the dispatcher ------------------------------------------------------------


def _samples() -> list[Sample]:
    return [
        Sample("a", "d", "Q1?", "B", "mc", ("s1", "s2"), ("1", "2", "3"), {"num_steps": 2}),
        Sample("b", "d", "Q2? é", "-2.5", "number", ("s",), None, {}),
    ]


def test_lada_roundtrip_and_deterministic_bytes(tmp_path: Path) -> None:
    p1, p2 = tmp_path / "a.jsonl", tmp_path / "sub" / "b.jsonl"
    assert write_jsonl(p1, _samples()) == 2
    write_jsonl(p2, _samples())
    assert p1.read_bytes() == p2.read_bytes() and "é" in p1.read_text(encoding="utf-8")
    assert p1.read_bytes().endswith(b"}\n") and b"\r" not in p1.read_bytes()
    loaded = load_lada_jsonl(p1)
    assert list(loaded) == _samples() and loaded[0].meta == {"num_steps": 2}
    assert list(load_dataset(p1, "lada")) == _samples()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"answer_type": "text"}, "answer_type"),
        ({"answer": "D"}, "answer"),
        ({"choices": None}, "choices"),
        ({"steps": "s1"}, "steps"),
        ({"id": None}, "id"),
        ({"meta": [1]}, "meta"),
    ],
)
def test_lada_validation(tmp_path: Path, patch: dict[str, object], field: str) -> None:
    record = {**_samples()[0].to_dict(), **patch}
    path = _write(tmp_path / "x.jsonl", [_samples()[1].to_dict(), record])
    with pytest.raises(DataError) as info:
        load_lada_jsonl(path)
    assert (info.value.line, info.value.field) == (2, field)


def test_lada_number_must_be_canonical_and_ids_unique(tmp_path: Path) -> None:
    rec = _samples()[1].to_dict()
    path = _write(tmp_path / "x.jsonl", [{**rec, "answer": "3.50"}])
    with pytest.raises(DataError, match="not canonical"):
        load_lada_jsonl(path)
    path = _write(tmp_path / "y.jsonl", [rec, rec])
    with pytest.raises(DataError, match=r"y.jsonl:2: field 'id': duplicate id"):
        load_lada_jsonl(path)


def test_load_dataset_dispatch(tmp_path: Path) -> None:
    path = _write(tmp_path / "mc.jsonl", [{"prompt": "Q", "choices": ["x", "y"], "answer": 1}])
    assert load_dataset(path, "mc", question_field="prompt")[0].answer == "B"
    with pytest.raises(ValueError, match="unknown data format"):
        load_dataset(path, "csv")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        load_dataset(path, "gsm8k", question_field="prompt")
