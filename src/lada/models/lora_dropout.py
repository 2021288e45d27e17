"""LoRA dropout that is cheap on a CPU: masks from 16-bit random integers.

peft's LoRA dropout is ``nn.Dropout``; on a CPU its mask comes from ``bernoulli_``, one
random draw per element, and the draws dominate: on SmolLM2-135M (LoRA on q/k/v/o, dropout
0.05, batch 4 x ~180 tokens) dropout took a quarter of a training step's time. :class:`CpuDropout`
draws one 32-bit integer per *two* elements (``random_`` is also cheaper per draw than
``bernoulli_``) and compares 16-bit halves against a threshold: the same inverted dropout,
with ``p`` rounded to a multiple of 1/65536 (the scale uses the rounded value, so the
expectation is exact) and a different random stream (seeded by the same generator).

:func:`cpu_lora_dropout` swaps the dropout modules of a model's LoRA layers for the duration
of a call (a training run), on CPU only (on a GPU ``nn.Dropout`` is one fused kernel).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

_LEVELS = 1 << 16  # a mask element compares one 16-bit half of a 32-bit draw


class CpuDropout(nn.Module):
    """Inverted dropout (``x / (1 - p)`` kept, 0 dropped) with a mask from 16-bit randoms."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p={p}: expected 0 <= p < 1")
        self.threshold = round(p * _LEVELS) - _LEVELS // 2  # int16 values below it are dropped
        self.p = (self.threshold + _LEVELS // 2) / _LEVELS  # the rate actually applied

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        n = x.numel()
        draws = torch.empty((n + 1) // 2, dtype=torch.int32, device=x.device)
        draws.random_(-(1 << 31), (1 << 31) - 1)
        keep = draws.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return torch.where(keep, x * (1.0 / (1.0 - self.p)), 0.0)

    def extra_repr(self) -> str:
        return f"p={self.p}"


@contextlib.contextmanager
def cpu_lora_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """For a model on CPU: its LoRA layers' ``nn.Dropout`` modules (peft's ``lora_dropout``)
    are :class:`CpuDropout` with the same ``p`` for the duration, restored on exit. Models on
    other devices, and LoRA without dropout (``nn.Identity``), pass through."""
    param = next(model.parameters(), None)
    swaps: list[tuple[nn.ModuleDict, str, nn.Module]] = []
    if param is not None and param.device.type == "cpu":
        for module in model.modules():
            table = getattr(module, "lora_dropout", None)
            if isinstance(table, nn.ModuleDict):
                swaps += [(table, k, v) for k, v in table.items() if type(v) is nn.Dropout]
    for table, key, old in swaps:
        table[key] = CpuDropout(old.p).train(old.training)
    try:
        yield model
    finally:
        for table, key, old in swaps:
            table[key] = old
