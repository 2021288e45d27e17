"""``OptimConfig``: optimiser, schedule and batching settings (torch-free, so that configs load
without importing torch; the loop itself is :mod:`lada.train.loop`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lada.utils.rules import Rule, betas, ge, gt, within


@dataclass
class OptimConfig:
    """Optimiser, schedule and batching settings shared by every training step."""

    lr: float = 3e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 20
    warmup_ratio: float | None = None  # when set, overrides warmup_steps (fraction of all steps)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.1  # final lr = min_lr_ratio * lr
    grad_clip: float | None = 1.0
    batch_size: int = 32
    epochs: int = 1
    max_steps: int | None = None  # when set, overrides epochs (cycling through epochs if needed)
    steps_cap: int | None = None  # ours: at most this many steps (epochs still apply under it)
    seed: int = 0
    max_length: int = 320  # tokens per example (prompt + target + eos)

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {
            "lr": gt(0),
            "weight_decay": ge(0),
            "betas": betas,
            "warmup_steps": ge(0),
            "warmup_ratio": within(0, 1, none_ok=True),
            "min_lr_ratio": within(0, 1),
            "grad_clip": gt(0, none_ok=True),
            "batch_size": ge(1),
            "epochs": ge(0),
            "max_steps": ge(1, none_ok=True),
            "steps_cap": ge(1, none_ok=True),
            "seed": ge(0),
            "max_length": ge(2),
        }
