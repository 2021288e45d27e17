"""``LoraSettings``: LoRA adapter settings (torch-free, so that configs load without torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lada.utils.rules import Rule, ge, gt, within


@dataclass
class LoraSettings:
    """LoRA adapter settings (peft ``LoraConfig``: ``r``, ``lora_alpha``, ``lora_dropout``)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {"r": ge(1), "alpha": gt(0), "dropout": within(0, 1, hi_open=True)}
