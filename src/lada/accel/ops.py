"""Small pieces the speed machinery shares: the decoder's math in PyTorch ops (the reference
the C kernels are checked against) and which LoRA layers it can fold."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def is_plain_lora(layer: nn.Module) -> bool:
    """Whether ``layer`` is a vanilla peft LoRA linear layer (an ``nn.Linear`` base, no DoRA or
    other variant, torch's weight layout), whose adapters :func:`write_effective_weight` folds."""
    base = getattr(layer, "base_layer", None)
    return (
        isinstance(base, nn.Linear)
        and hasattr(layer, "get_delta_weight")
        and not getattr(layer, "lora_variant", None)
        and not getattr(layer, "fan_in_fan_out", False)
    )


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Llama's RMSNorm: statistics in fp32, scaled by ``weight`` in ``x``'s dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def signed_sin(sin: Tensor) -> Tensor:
    """``sin`` with its first half negated, for :func:`rotate`."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def rotate(x: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
    """Rotary position embedding (the ``rotate_half`` form) ``x cos + rotate_half(x) sin``,
    computed as ``x cos + roll(x, d/2) sin_signed`` (``sin_signed`` = :func:`signed_sin`, made
    once per forward): ``rotate_half(x) = (-x2, x1)`` and ``roll(x) = (x2, x1)``, so the
    products are the same numbers, with two fewer ops per call."""
    return x * cos + x.roll(x.shape[-1] // 2, -1) * sin_signed
