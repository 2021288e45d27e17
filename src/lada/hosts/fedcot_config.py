"""FedCoT's settings, ``hosts.fedcot`` (a light module: read by config checks without torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lada.utils.rules import setting, within


@dataclass(frozen=True)
class FedCoTConfig:
    """FedCoT / distilling step-by-step: each SLM learns (1 − α)·L_label + α·L_rationale."""

    alpha: float = setting(0.5, within(0, 1))  # α [distilling step-by-step, FedCoT: 0.5]

    # old keys still read (with a one-line notice): old dotted key -> this section's field
    renamed: ClassVar[dict[str, str]] = {"distill.fedcot_alpha": "alpha"}


__all__ = ["FedCoTConfig"]
