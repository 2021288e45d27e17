"""LoRA dropout that is cheap on a CPU.

peft's LoRA dropout is ``nn.Dropout``; on a CPU its mask comes from ``bernoulli_``, one
sequential mt19937 draw per element, and the draws dominate: on SmolLM2-135M (LoRA on
q/k/v/o, dropout 0.05, batch 4 x ~180 tokens) dropout took a quarter of a training step's
time. :class:`CpuDropout` is the same inverted dropout (``x / (1 - p)`` kept, 0 dropped) from
a cheaper stream:

* with the C kernel (``kernels/dropout.c``, compiled by :mod:`lada.accel.c_build`; the
  default where it builds and passes its probe): each element's decision is a pure function of
  a seed drawn from torch's generator and the element's index (SplitMix64 on a counter), so
  it runs on all threads, and the backward pass recomputes the mask instead of storing it.
  ``p`` is rounded to a multiple of 2^-32.
* otherwise (no compiler, ``runtime.accel: torch``): one 32-bit ``random_`` draw per *two*
  elements, compared as 16-bit halves; ``p`` rounded to a multiple of 1/65536.

Either way the scale uses the rounded ``p`` (the expectation is exact) and the stream is
seeded by torch's generator (a training run's seed fixes it), but it is not the stream
``nn.Dropout`` would draw. :func:`cpu_lora_dropout` swaps the dropout modules of a model's
LoRA layers for the duration of a call (a training run), on CPU only (on a GPU ``nn.Dropout``
is one fused kernel).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from lada.accel import c_build

log = logging.getLogger(__name__)

_LEVELS = 1 << 16  # fallback: a mask element compares one 16-bit half of a 32-bit draw
_KERNEL_LEVELS = 1 << 32  # kernel: one 32-bit half of a 64-bit counter-based draw
SOURCE = c_build.KERNELS / "dropout.c"
_P, _I, _F, _L, _U64, _U32 = (
    ctypes.c_void_p,
    ctypes.c_int,
    ctypes.c_float,
    ctypes.c_int64,
    ctypes.c_uint64,
    ctypes.c_uint32,
)
_SIGNATURES = {"lada_dropout": [_P, _P, _L, _U64, _U32, _F, _I, _I]}


@functools.cache
def _library() -> ctypes.CDLL:
    return c_build.load_library(SOURCE, _SIGNATURES)


def kernel_dropout(x: Tensor, seed: int, threshold: int, scale: float) -> Tensor:
    """``x`` with element ``i`` kept (times ``scale``) when 32-bit half ``i & 1`` of
    SplitMix64 output ``i // 2`` from ``seed`` is ``>= threshold``, else 0 (see
    ``kernels/dropout.c``). ``x``: a contiguous fp32 or bf16 CPU tensor. Not differentiable
    by itself (:class:`_KernelDropout` is)."""
    if x.dtype not in (torch.float32, torch.bfloat16) or x.device.type != "cpu":
        raise ValueError(f"kernel_dropout: want an fp32/bf16 CPU tensor, got {x.dtype} {x.device}")
    if not x.is_contiguous():
        raise ValueError(f"kernel_dropout: want a contiguous tensor, got strides {x.stride()}")
    if not 0 <= threshold < _KERNEL_LEVELS:
        raise ValueError(f"kernel_dropout: threshold {threshold} outside [0, 2^32)")
    y = torch.empty_like(x)
    n = x.numel()
    threads = c_build.threads_for(n)
    is_bf16 = int(x.dtype == torch.bfloat16)
    _library().lada_dropout(
        x.data_ptr(), y.data_ptr(), n, seed % (1 << 64), threshold, scale, is_bf16, threads
    )
    return y


class _KernelDropout(torch.autograd.Function):
    """Dropout through :func:`kernel_dropout`; the backward pass applies the same mask and
    scale to the gradient, recomputed from the seed (nothing stored but three numbers)."""

    @staticmethod
    def forward(ctx, x: Tensor, seed: int, threshold: int, scale: float) -> Tensor:
        ctx.params = (seed, threshold, scale)
        return kernel_dropout(x.contiguous(), seed, threshold, scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        return kernel_dropout(grad.contiguous(), *ctx.params), None, None, None


@functools.cache
def kernel_unsupported() -> str | None:
    """Why the C dropout kernel cannot run here (None when it builds, loads and passes a
    probe: outputs are 0 or ``x * scale``, the kept share is near ``1 - p``, the stream does
    not depend on the thread count, and the backward pass drops what the forward dropped)."""
    try:
        _library()
    except (c_build.KernelBuildError, OSError) as err:
        return str(err)
    gen = torch.Generator().manual_seed(0)
    n, p = 1 << 17, 0.25  # large enough for the threaded path
    threshold = round(p * _KERNEL_LEVELS)
    scale = 1.0 / (1.0 - threshold / _KERNEL_LEVELS)
    x = torch.randn(n, generator=gen) + 5.0  # nonzero everywhere: kept <=> y != 0
    for data in (x, x.bfloat16()):
        y = kernel_dropout(data, 12345, threshold, scale)
        kept = y != 0
        if not torch.equal(y[kept], data[kept] * scale):
            return "the compiled dropout kernel's kept values are not x * scale"
        if abs(kept.float().mean().item() - (1 - p)) > 0.01:
            return "the compiled dropout kernel keeps the wrong share of elements"
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            alone = kernel_dropout(data, 12345, threshold, scale)
        finally:
            torch.set_num_threads(threads)
        if not torch.equal(alone, y):
            return "the compiled dropout kernel's stream depends on the thread count"
        with torch.enable_grad():  # the first CpuDropout may be made inside a no_grad block
            leaf = data.clone().requires_grad_(True)
            _KernelDropout.apply(leaf, 12345, threshold, scale).sum().backward()
        if not torch.equal(leaf.grad != 0, kept):
            return "the compiled dropout kernel's backward pass uses another mask"
    if torch.equal(kernel_dropout(x, 1, threshold, scale), kernel_dropout(x, 2, threshold, scale)):
        return "the compiled dropout kernel ignores its seed"
    return None


def use_kernel(kernel: bool | None = None) -> bool:
    """Whether :class:`CpuDropout` runs the C kernel: ``kernel`` True demands it (an error
    says why it cannot), False refuses, None uses it where :func:`kernel_unsupported` allows
    (logging the reason once where not), unless ``runtime.accel`` is not ``native``."""
    return c_build.choose(
        kernel, kernel_unsupported, "the C dropout kernel", log, "16-bit random_ masks instead"
    )


class CpuDropout(nn.Module):
    """Inverted dropout (``x / (1 - p)`` kept, 0 dropped) for CPU tensors: the C kernel's
    counter-based stream where it runs (``kernel``, see :func:`use_kernel`), else masks from
    16-bit halves of ``random_`` draws. ``p`` is the rate actually applied (rounded)."""

    def __init__(self, p: float, kernel: bool | None = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p={p}: expected 0 <= p < 1")
        self.kernel = use_kernel(kernel) if p > 0 else False
        if self.kernel:
            self.threshold = round(p * _KERNEL_LEVELS)  # 32-bit draws below it are dropped
            self.p = self.threshold / _KERNEL_LEVELS
        else:
            self.threshold = round(p * _LEVELS) - _LEVELS // 2  # int16 values below it dropped
            self.p = (self.threshold + _LEVELS // 2) / _LEVELS
        self.scale = 1.0 / (1.0 - self.p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.kernel and x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16):
            seed = int(torch.empty((), dtype=torch.int64).random_())  # torch's generator
            return _KernelDropout.apply(x, seed, self.threshold, self.scale)
        n = x.numel()
        draws = torch.empty((n + 1) // 2, dtype=torch.int32, device=x.device)
        draws.random_(-(1 << 31), (1 << 31) - 1)
        keep = draws.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return torch.where(keep, x * self.scale, 0.0)

    def extra_repr(self) -> str:
        return f"p={self.p}, kernel={self.kernel}"


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
