"""Summary statistics of a list of samples (JSON-serialisable)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from lada.data.sample import Sample

__all__ = ["dataset_stats"]


def dataset_stats(samples: Iterable[Sample]) -> dict[str, Any]:
    """``{"num_samples", "answer_types", "domains", "num_steps"}``; keys sorted, step counts
    keyed by strings in numeric order."""
    samples = list(samples)
    steps = Counter(s.num_steps for s in samples)
    return {
        "num_samples": len(samples),
        "answer_types": dict(sorted(Counter(s.answer_type for s in samples).items())),
        "domains": dict(sorted(Counter(s.domain for s in samples).items())),
        "num_steps": {str(n): steps[n] for n in sorted(steps)},
    }
