"""FedMKT's settings, ``hosts.fedmkt`` (a light module: read by config checks without torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lada.hosts.vocabulary import vocabulary_problems
from lada.utils.rules import ge, setting


@dataclass(frozen=True)
class FedMKTConfig:
    """FedMKT: selective mutual distillation of top-k logits, lm_weight·LM + distill_weight·KL."""

    # teacher logits kept per token [FedMKT: 128]; clipped to the vocabulary
    top_k: int = setting(128, ge(1))
    lm_weight: float = setting(0.9, ge(0))  # 0.9·LM + 0.1·distill [FedMKT]
    distill_weight: float = setting(0.1, ge(0))

    # old keys still read (with a one-line notice): old dotted key -> this section's field
    renamed: ClassVar[dict[str, str]] = {
        "distill.top_k": "top_k",
        "distill.fedmkt_lm_weight": "lm_weight",
        "distill.fedmkt_distill_weight": "distill_weight",
    }

    @staticmethod
    def run_problems(cfg: Any) -> list[tuple[str, Any, str]]:
        """What this host cannot run in a whole run config: (key, value, what is wrong)."""
        return vocabulary_problems(cfg)


__all__ = ["FedMKTConfig"]
