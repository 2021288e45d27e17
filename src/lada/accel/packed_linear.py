"""bf16 linear layers on CPU from weights reordered once into oneDNN's blocked layout.

Why (measured, docs/real-models.md, ``benchmarks/real_model_speed.py``): on a CPU with native
bf16 (AVX512-BF16 or AMX), ``torch.nn.functional.linear`` with bf16 weights reorders the
weight matrix into oneDNN's blocked layout at *every* call. A decode step multiplies 16–24
rows by every weight of the model, so that reorder is most of its cost: a
16 × 576 by 576 × 1536 product took about half the time from a weight reordered
once (``torch.ops.mkldnn._reorder_linear_weight``, the op PyTorch's own inductor uses when
it freezes a bf16 model on CPU), with bit-identical outputs; at 1,024 rows (training, prefill)
the gain is 5–15 %.

:func:`packing_unsupported` says why a weight cannot be packed here (not bf16, not on CPU, no
oneDNN bf16 support, or the ops missing or giving other numbers than ``linear`` on a probe);
callers then keep the plain weight and say so in the log.
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import Tensor, nn

from lada.utils.log_once import log_once

log = logging.getLogger(__name__)


@functools.cache
def _probe() -> str | None:
    """None when the packed bf16 linear ops exist here and match ``linear`` on a small probe."""
    if not torch.backends.mkldnn.is_available():
        return "PyTorch has no oneDNN (mkldnn) backend"
    ops = torch.ops.mkldnn
    if not (hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise")):
        return "this PyTorch lacks mkldnn._reorder_linear_weight / _linear_pointwise"
    supported = getattr(ops, "_is_mkldnn_bf16_supported", None)
    if supported is None or not supported():
        return "this CPU has no native bf16 support in oneDNN"
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(48, 32, generator=gen).bfloat16()
    bias = torch.randn(48, generator=gen).bfloat16()
    x = torch.randn(5, 32, generator=gen).bfloat16()
    try:
        packed = ops._reorder_linear_weight(weight, 4)
        got = ops._linear_pointwise(x, packed, bias, "none", [], "")
    except RuntimeError as err:  # pragma: no cover - depends on the PyTorch build
        return f"the packed ops failed on a probe: {err}"
    want = nn.functional.linear(x, weight, bias)
    if not torch.allclose(got.float(), want.float(), rtol=1e-2, atol=1e-2):  # pragma: no cover
        return "the packed ops disagree with linear on a probe"
    return None


def packing_unsupported(dtype: torch.dtype, device: torch.device | str = "cpu") -> str | None:
    """Why weights of ``dtype`` on ``device`` cannot be packed for :func:`packed_linear` (None
    when they can)."""
    if dtype != torch.bfloat16:
        return f"weights in {dtype} (packing helps bf16 only; fp32 measured no faster)"
    if torch.device(device).type != "cpu":
        return f"weights on {torch.device(device).type} (packing is for CPU)"
    return _probe()


def pack_weight(weight: Tensor, rows_hint: int = 16) -> Tensor:
    """``weight`` ``[out, in]`` (bf16, CPU) reordered for :func:`packed_linear`. ``rows_hint``:
    the typical number of input rows (the layout is chosen for it; any count works)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), rows_hint)


def packed_linear(x: Tensor, packed: Tensor, bias: Tensor | None) -> Tensor:
    """``x W^T + b`` with ``W`` packed by :func:`pack_weight`; ``x`` ``[..., in]`` bf16."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


class Projection:
    """A linear map ``x -> x W^T + b`` in the dtype of ``weight``, from the weight packed by
    :func:`pack_weight` where that works here and ``pack`` asks for it, else the plain one."""

    def __init__(self, weight: Tensor, bias: Tensor | None, *, pack: bool) -> None:
        self.bias = bias
        self.packed = pack_weight(weight) if pack else None
        self.weight = None if pack else weight  # the packed copy replaces the plain one

    def __call__(self, x: Tensor) -> Tensor:
        if self.packed is not None:
            return packed_linear(x, self.packed, self.bias)
        return nn.functional.linear(x, self.weight, self.bias)


def should_pack(
    dtype: torch.dtype, device: torch.device | str, pack: bool | None, what: str
) -> bool:
    """Whether to pack weights of ``dtype`` on ``device``: ``pack`` True demands it (an error
    says why it cannot), False refuses, None (auto) packs where :func:`packing_unsupported`
    allows, logging the reason once where it does not (bf16 weights on CPU only: fp32 and GPU
    weights are simply not packed)."""
    reason = packing_unsupported(dtype, device)
    if pack is True and reason is not None:
        raise ValueError(f"cannot pack the {what} weights: {reason}")
    quiet = dtype != torch.bfloat16 or torch.device(device).type != "cpu"
    if pack is None and reason is not None and not quiet:
        log_once(log, f"{what}: bf16 weights not packed ({reason}); plain linear layers instead")
    return pack is not False and reason is None
