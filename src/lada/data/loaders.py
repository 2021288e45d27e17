"""Loaders: GSM8K JSONL, generic multiple-choice JSONL and LaDa's own JSONL, all to ``Sample``.

Every loader returns a :class:`LoadResult`: a ``list[Sample]`` that also carries a
:class:`LoadReport` (``result.report``). With ``on_error="raise"`` (default) the first bad record
raises :class:`DataError` naming file, line and field. With ``on_error="skip"`` bad records are
left out, each one recorded in the report (and a warning is logged), never dropped silently.
A file that yields no sample (empty, only blank lines, every record skipped) is an error in
both modes; so is a line longer than ``lada.data.jsonl.MAX_LINE_BYTES`` (1 MiB) or a UTF-16
file. A UTF-8 byte-order mark is accepted.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from lada.data.errors import DataError
from lada.data.jsonl import read_jsonl_dicts
from lada.data.sample import LETTERS, Sample

__all__ = [
    "LoadReport",
    "LoadResult",
    "OnError",
    "SkippedRecord",
    "canonical_number",
    "load_dataset",
    "load_gsm8k",
    "load_lada_jsonl",
    "load_mc_jsonl",
    "parse_answer_key",
    "parse_choices",
]

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
PathLike = str | os.PathLike[str]
MIN_CHOICES, MAX_CHOICES = 2, len(LETTERS)


@dataclass(frozen=True)
class SkippedRecord:
    """One record left out in skip mode."""

    line: int | None
    field: str | None
    message: str


@dataclass
class LoadReport:
    """What a load did: how many samples were loaded and which records were skipped."""

    path: str
    num_loaded: int = 0
    skipped: list[SkippedRecord] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def add(self, err: DataError) -> None:
        self.skipped.append(SkippedRecord(err.line, err.field, err.message))

    def summary(self) -> str:
        text = f"{self.path}: loaded {self.num_loaded}, skipped {self.num_skipped}"
        if self.skipped:
            first = self.skipped[0]
            text += f" (first: line {first.line}, field {first.field!r}: {first.message})"
        return text


class LoadResult(list[Sample]):
    """The loaded samples (a plain ``list[Sample]``) plus ``.report``, a :class:`LoadReport`."""

    def __init__(self, samples: Iterable[Sample], report: LoadReport) -> None:
        super().__init__(samples)
        self.report = report


# ---------------------------------------------------------------------------------------------
# shared machinery


def _load(
    path: PathLike,
    on_error: OnError,
    build: Callable[[int, int, dict[str, Any]], Sample],
    head: int | None = None,
) -> LoadResult:
    """Read records, ``build(index, line, record)`` each into a Sample, handle errors, check ids.
    ``head``: stop after that many records (a quick check of a file's format)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    report = LoadReport(path=str(path))
    json_errors: list[DataError] | None = [] if on_error == "skip" else None
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for index, (line, record) in enumerate(read_jsonl_dicts(path, json_errors)):
        if head is not None and index >= head:
            break
        try:
            sample = build(index, line, record)
            if sample.id in seen:
                raise DataError(
                    f"duplicate id {sample.id!r} (first on line {seen[sample.id]})", field="id"
                )
        except DataError as e:
            err = e.located(path, line)
            if on_error == "raise":
                raise err from None
            report.add(err)
            continue
        seen[sample.id] = line
        samples.append(sample)
    for err in json_errors or ():
        report.add(err)
    report.skipped.sort(key=lambda r: r.line or 0)
    report.num_loaded = len(samples)
    if not samples:
        if report.skipped:
            first = report.skipped[0]
            where = DataError(first.message, path=path, line=first.line, field=first.field)
            raise DataError(
                f"no valid record: all {report.num_skipped} skipped (first: {where})", path=path
            )
        raise DataError("no records: the file is empty or has only blank lines", path=path)
    if report.skipped:
        log.warning("%s", report.summary())
    return LoadResult(samples, report)


def _get(record: dict[str, Any], key: str, kind: type | tuple[type, ...] = str) -> Any:
    if key not in record or record[key] is None:
        raise DataError("missing", field=key)
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(f"expected {names}, got {type(value).__name__}", field=key)
    if isinstance(value, str) and not value.strip():
        raise DataError("empty", field=key)
    return value


_NUMBER = re.compile(r"([+-]?)\$?(\d+(?:\.\d*)?|\.\d+)")


def canonical_number(text: str) -> str:
    """Canonical form of a number: ``"1,000"->"1000"``, ``"3.50"->"3.5"``, ``"5.0"->"5"``.

    Commas, spaces and a leading ``$`` are ignored; raises ``ValueError`` when the text is not
    a plain decimal number.
    """
    m = _NUMBER.fullmatch(text.replace(",", "").replace(" ", "").strip())
    if m is None:
        raise ValueError(f"not a number: {text!r}")
    try:
        d = Decimal(m.group(1) + m.group(2))
    except InvalidOperation as e:  # pragma: no cover - the regex already guards this
        raise ValueError(f"not a number: {text!r}") from e
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


# ---------------------------------------------------------------------------------------------
# GSM8K

_CALC = re.compile(r"<<[^<>]*>>")
_FINAL = "####"


def _gsm8k_solution(text: str) -> tuple[tuple[str, ...], str]:
    lines = text.split("\n")
    final_idx = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith(_FINAL)), None)
    if final_idx is None:
        raise DataError(f"no final '{_FINAL} N' line", field="answer")
    final_line = lines[final_idx].strip()
    try:
        answer = canonical_number(final_line.removeprefix(_FINAL))
    except ValueError:
        raise DataError(f"cannot parse number from {final_line!r}", field="answer") from None
    steps = tuple(s for s in (" ".join(_CALC.sub("", ln).split()) for ln in lines[:final_idx]) if s)
    return steps, answer


def load_gsm8k(
    path: PathLike, *, on_error: OnError = "raise", head: int | None = None
) -> LoadResult:
    """GSM8K JSONL (``{"question", "answer"}``) -> number samples with calculator-free steps."""
    stem = Path(path).stem

    def build(index: int, line: int, record: dict[str, Any]) -> Sample:
        from lada.data.guess import format_hint

        question = _get(record, "question").strip()
        try:
            steps, answer = _gsm8k_solution(_get(record, "answer"))
        except DataError as e:
            hint = format_hint(record, "gsm8k")
            if hint:
                raise DataError(f"{e.message}; {hint}", field=e.field) from None
            raise
        return Sample(
            id=f"gsm8k-{stem}-{index:05d}",
            domain="gsm8k",
            question=question,
            answer=answer,
            answer_type="number",
            steps=steps,
            choices=None,
            meta={"num_steps": len(steps)},
        )

    return _load(path, on_error, build, head)


# ---------------------------------------------------------------------------------------------
# multiple choice

_LABEL_ITEM = re.compile(r"\s*(?:\(\s*([A-Ha-h])\s*\)|([A-Ha-h])\s*[).:])\s*(.*)", re.DOTALL)


_LETTER_KEY = re.compile(r"\s*(?:\(\s*([A-Ha-h])\s*\)|([A-Ha-h])\s*[).:]?)\s*")


def _label_of(text: str) -> str | None:
    """``"B"``, ``"b"``, ``"(B)"``, ``"B)"``, ``"B."`` -> ``"B"``; anything else -> None."""
    m = _LETTER_KEY.fullmatch(text)
    return None if m is None else (m.group(1) or m.group(2)).upper()


def _strip_labels(items: list[str]) -> list[str]:
    """Drop ``"A) "``-style labels when every item carries the labels A, B, C... in order."""
    matches = [_LABEL_ITEM.fullmatch(s) for s in items]
    if not all(matches):
        return items
    labels = [(m.group(1) or m.group(2)).upper() for m in matches if m]
    if labels != list(LETTERS[: len(items)]):
        return items
    return [m.group(3).strip() for m in matches if m]


def _split_labelled_string(text: str) -> list[str] | None:
    """``"A) foo B) bar"`` / ``"(A) foo (B) bar"`` -> ``["foo", "bar"]``; None if unlabelled."""
    text = text.strip()
    first = _LABEL_ITEM.match(text)
    if first is None or first.start() != 0:
        return None
    lower = (first.group(1) or first.group(2)).islower()
    spans: list[tuple[int, int]] = []
    pos = 0
    for letter in LETTERS:
        letter = letter.lower() if lower else letter
        lab = re.escape(letter)
        pat = re.compile(rf"(?:^|(?<=\s))(?:\(\s*{lab}\s*\)|{lab}\s*[).:])\s*")
        m = pat.search(text, pos)
        if m is None or (not spans and m.start() != 0):
            break
        spans.append((m.start(), m.end()))
        pos = m.end()
    if len(spans) < 2:
        return None
    ends = [s for s, _ in spans[1:]] + [len(text)]
    return [text[a:b].strip() for (_, a), b in zip(spans, ends, strict=True)]


def parse_choices(value: Any) -> tuple[str, ...]:
    """Choices from a list, a ``{"A": ...}`` dict, labelled strings or one labelled string."""
    items: list[str]
    if isinstance(value, dict):
        keyed: dict[str, str] = {}
        for key, text in value.items():
            letter = _label_of(str(key))
            if letter is None:
                raise DataError(f"choice key {key!r} is not a letter A-H", field="choices")
            keyed[letter] = text
        letters = sorted(keyed)
        if letters != list(LETTERS[: len(letters)]):
            raise DataError(
                f"choice keys must be A, B, C... in order, got {letters}", field="choices"
            )
        items = [keyed[k] for k in letters]
    elif isinstance(value, list):
        items = value
    elif isinstance(value, str):
        split = _split_labelled_string(value)
        if split is None:
            raise DataError("a choices string needs labels like 'A) ... B) ...'", field="choices")
        items = split
    else:
        raise DataError(f"expected list, dict or str, got {type(value).__name__}", field="choices")
    texts: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise DataError(f"choice {item!r} is not a string", field="choices")
        texts.append(" ".join(str(item).split()))
    texts = _strip_labels(texts)
    if not MIN_CHOICES <= len(texts) <= MAX_CHOICES:
        raise DataError(
            f"need {MIN_CHOICES} to {MAX_CHOICES} choices, got {len(texts)}", field="choices"
        )
    if any(not t for t in texts):
        raise DataError("empty choice", field="choices")
    return tuple(texts)


def parse_answer_key(value: Any, choices: tuple[str, ...], *, field_name: str = "answer") -> str:
    """An answer key (letter, ``"(B)"``, 0-based index or a choice's exact text) -> letter."""
    n = len(choices)
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < n:
            return LETTERS[value]
        raise DataError(f"index {value} out of range for {n} choices", field=field_name)
    if not isinstance(value, str):
        raise DataError(f"expected a letter, index or choice text, got {value!r}", field=field_name)
    letter = _label_of(value)
    if letter is not None:
        if LETTERS.index(letter) < n:
            return letter
        raise DataError(f"letter {letter} out of range for {n} choices", field=field_name)
    text = " ".join(value.split())
    hits = [i for i, c in enumerate(choices) if c == text]
    if len(hits) == 1:
        return LETTERS[hits[0]]
    if len(hits) > 1:
        raise DataError(f"answer text {value!r} matches several choices", field=field_name)
    raise DataError(
        f"answer {value!r} is not a letter, an index or a choice's text", field=field_name
    )


def _rationale(value: Any, field_name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        lines = value.split("\n")
    elif isinstance(value, list) and all(isinstance(s, str) for s in value):
        lines = value
    else:
        raise DataError("expected a string or a list of strings", field=field_name)
    return tuple(s.strip() for s in lines if s.strip())


def load_mc_jsonl(
    path: PathLike,
    *,
    question_field: str = "question",
    choices_field: str = "choices",
    answer_field: str = "answer",
    rationale_field: str | None = None,
    id_field: str | None = None,
    domain: str = "mc",
    domain_field: str | None = None,
    on_error: OnError = "raise",
    head: int | None = None,
) -> LoadResult:
    """Generic multiple-choice JSONL -> ``mc`` samples (answer = letter, 2 to 8 choices).

    Ids come from ``id_field`` or are ``f"{domain}-{stem}-{i:05d}"``; the domain from
    ``domain_field`` (required in every record when set) or ``domain``.
    """
    stem = Path(path).stem

    def build(index: int, line: int, record: dict[str, Any]) -> Sample:
        question = _get(record, question_field).strip()
        if choices_field not in record or record[choices_field] is None:
            raise DataError("missing", field=choices_field)
        try:
            choices = parse_choices(record[choices_field])
        except DataError as e:
            raise DataError(e.message, field=choices_field) from None
        if answer_field not in record or record[answer_field] is None:
            raise DataError("missing", field=answer_field)
        answer = parse_answer_key(record[answer_field], choices, field_name=answer_field)
        steps = _rationale(record.get(rationale_field), rationale_field) if rationale_field else ()
        dom = str(_get(record, domain_field)).strip() if domain_field else domain
        sid = (
            str(_get(record, id_field, (str, int))).strip()
            if id_field
            else f"{domain}-{stem}-{index:05d}"
        )
        return Sample(
            id=sid,
            domain=dom,
            question=question,
            answer=answer,
            answer_type="mc",
            steps=steps,
            choices=choices,
            meta={"num_steps": len(steps)},
        )

    return _load(path, on_error, build, head)


# ---------------------------------------------------------------------------------------------
# LaDa's own format


def _validate_lada(record: dict[str, Any]) -> Sample:
    from lada.data.guess import format_hint

    hint = format_hint(record, "lada")
    if hint:
        raise DataError(f"missing; {hint}", field="answer_type")
    for key in ("id", "domain", "question"):
        _get(record, key)
    if record.get("answer") != "":  # "" = unlabelled (a public question with no label)
        _get(record, "answer")
    answer_type = record.get("answer_type")
    if answer_type not in ("mc", "number"):
        raise DataError(f"must be 'mc' or 'number', got {answer_type!r}", field="answer_type")
    steps = record.get("steps", [])
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise DataError("expected a list of strings", field="steps")
    meta = record.get("meta", {})
    if meta is not None and not isinstance(meta, dict):
        raise DataError(f"expected an object, got {type(meta).__name__}", field="meta")
    choices = record.get("choices")
    answer = record["answer"]
    if answer == "" and steps:  # an unlabelled question has neither rationale nor answer
        raise DataError("a sample with no answer (unlabelled) has no steps", field="steps")
    if answer_type == "mc":
        if not isinstance(choices, list) or not all(isinstance(c, str) and c for c in choices):
            raise DataError("an mc sample needs a list of non-empty strings", field="choices")
        if not MIN_CHOICES <= len(choices) <= MAX_CHOICES:
            raise DataError(
                f"need {MIN_CHOICES} to {MAX_CHOICES} choices, got {len(choices)}", field="choices"
            )
        if answer != "" and answer not in LETTERS[: len(choices)]:
            raise DataError(
                f"expected a letter A-{LETTERS[len(choices) - 1]}, got {answer!r}", field="answer"
            )
    else:
        if choices is not None:
            raise DataError("a number sample has no choices (expected null)", field="choices")
        if answer == "":
            return Sample.from_dict(record)
        try:
            canon = canonical_number(answer)
        except ValueError:
            raise DataError(f"cannot parse number from {answer!r}", field="answer") from None
        if canon != answer:
            raise DataError(
                f"number {answer!r} is not canonical (expected {canon!r})", field="answer"
            )
    return Sample.from_dict(record)


def load_lada_jsonl(
    path: PathLike, *, on_error: OnError = "raise", head: int | None = None
) -> LoadResult:
    """LaDa's own JSONL (one ``Sample.to_dict()`` per line), every field validated."""
    return _load(path, on_error, lambda _i, _line, record: _validate_lada(record), head)


def load_dataset(
    path: PathLike,
    fmt: Literal["gsm8k", "mc", "lada"],
    *,
    on_error: OnError = "raise",
    head: int | None = None,
    **field_options: Any,
) -> LoadResult:
    """Load ``path`` in format ``fmt``; ``field_options`` go to :func:`load_mc_jsonl`.
    ``head``: only the first that many records (a quick check of the file's format)."""
    if fmt == "mc":
        return load_mc_jsonl(path, on_error=on_error, head=head, **field_options)
    if field_options:
        raise TypeError(f"format {fmt!r} takes no field options, got {sorted(field_options)}")
    if fmt == "gsm8k":
        return load_gsm8k(path, on_error=on_error, head=head)
    if fmt == "lada":
        return load_lada_jsonl(path, on_error=on_error, head=head)
    raise ValueError(f"unknown data format {fmt!r} (expected 'gsm8k', 'mc' or 'lada')")
