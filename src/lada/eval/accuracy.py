"""Accuracy of a model on samples: generate, extract, compare, group, render as a table."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lada.data.extract import extract_answer, is_correct
from lada.data.sample import Sample

Record = dict[str, Any]


@dataclass
class EvalResult:
    records: list[Record]  # id, domain, num_steps, pred, gold, correct, text
    accuracy: float  # NaN for no samples
    groups: dict[str, list[Record]] = field(default_factory=dict)  # key -> accuracy_table rows


def score_paths(samples: Sequence[Sample], texts: Sequence[str]) -> list[Record]:
    """One record per (sample, generated path)."""
    records = []
    for s, text in zip(samples, texts, strict=True):
        pred = extract_answer(text, s.answer_type)
        records.append(
            {
                "id": s.id,
                "domain": s.domain,
                "num_steps": s.num_steps,
                "kind": s.meta.get("kind"),  # synthetic tests: "private" | "general"
                "pred": pred,
                "gold": s.answer,
                "correct": is_correct(pred, s.answer, s.answer_type),
                "text": text,
            }
        )
    return records


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    samples: Sequence[Sample],
    *,
    batch_size: int = 64,
    max_new_tokens: int = 160,
    group_keys: Sequence[str] = ("domain", "num_steps"),
    desc: str = "evaluate",
    prompts: Sequence[str] | None = None,
) -> EvalResult:
    """Greedy-decode every sample's prompt (or ``prompts[i]`` for sample i, the input format
    a host trains its SLMs in) with the run's generator (:func:`lada.accel.generator`) and
    score the final answers."""
    if prompts is not None and len(prompts) != len(samples):
        raise ValueError(f"{len(prompts)} prompts for {len(samples)} samples")
    from lada.accel import generator

    texts = generator(model, tokenizer).paths(
        [s.prompt() for s in samples] if prompts is None else list(prompts),
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        desc=desc,
    )
    records = score_paths(samples, texts)
    accuracy = sum(r["correct"] for r in records) / len(records) if records else float("nan")
    groups = {key: accuracy_table(records, by=[key]) for key in group_keys}
    return EvalResult(records, accuracy, groups)


def accuracy_table(records: Iterable[Record], by: Sequence[str]) -> list[Record]:
    """Rows ``{*by, "n", "correct", "accuracy"}``, one per distinct value tuple, sorted."""
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        c = counts[tuple(r[k] for k in by)]
        c[0] += bool(r["correct"])
        c[1] += 1
    rows = []
    for key in sorted(counts, key=_sort_key):
        correct, n = counts[key]
        rows.append(
            {**dict(zip(by, key, strict=True)), "n": n, "correct": correct, "accuracy": correct / n}
        )
    return rows


def _sort_key(values: tuple) -> tuple:
    """Numbers before strings, numbers numerically (so 2 < 10)."""
    return tuple(
        (0, v, "") if isinstance(v, int | float) and not isinstance(v, bool) else (1, 0, str(v))
        for v in values
    )


def group_counts(
    records: Iterable[Record], keys: Sequence[str] = ("domain", "num_steps", "kind")
) -> dict[str, dict[str, list[int]]]:
    """JSON-friendly ``{key: {str(value): [correct, n]}}`` for each grouping key; a key that no
    record carries (``kind`` outside the synthetic testbed) is left out."""
    records = list(records)
    return {
        key: {str(row[key]): [row["correct"], row["n"]] for row in accuracy_table(records, [key])}
        for key in keys
        if any(r.get(key) is not None for r in records)
    }


def correctness_bits(records: Iterable[Record]) -> str:
    """Per-question correctness in record order as a string of "1"/"0" (ours: what the bench's
    paired confidence intervals resample; a metric, not a sample, so it may leave a client)."""
    return "".join("1" if r["correct"] else "0" for r in records)


def ids_fingerprint(ids: Iterable[str]) -> str:
    """SHA-1 of the ids in order: two runs' per-question results pair up only when it is equal."""
    import hashlib

    return hashlib.sha1("\n".join(ids).encode()).hexdigest()


def render_table(rows: Sequence[Record], title: str = "") -> Table:
    """A rich table of ``accuracy_table`` rows (accuracy shown in %)."""
    table = Table(title=title or None)
    columns = list(rows[0]) if rows else ["accuracy"]
    for col in columns:
        table.add_column(col, justify="right" if col in ("n", "correct", "accuracy") else "left")
    for row in rows:
        table.add_row(*(_fmt(col, row.get(col)) for col in columns))
    return table


def _fmt(col: str, value: Any) -> str:
    if col == "accuracy" and isinstance(value, float):
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
