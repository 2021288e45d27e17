"""Which dtype a model computes in: ``dtype: auto | fp32 | bf16`` (and ``fp16`` on GPU).

* ``fp32`` (``float32``): fp32 weights, fp32 compute.
* ``bf16`` (``bfloat16``): on CUDA, bf16 weights (half the memory). On CPU, fp32 master weights
  with bf16 **autocast** for forward passes (training, scoring, generation): bf16 weights with
  AdamW lose small updates, and autocast keeps the optimiser exact.
* ``fp16`` (``float16``): fp16 weights (GPU only; no loss scaling is done: prefer bf16).
* ``auto`` (ours): CUDA with bf16 support -> bf16 weights; a CPU with native bf16 dot products
  (``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``) and a model of at least
  :data:`AUTO_BF16_MIN_PARAMS` parameters -> fp32 weights + bf16 autocast; else fp32. Tiny zoo
  models stay fp32: their matmuls are too small for bf16 to pay (measured slower).

The choice is remembered for the model (:func:`autocast_dtype`, nothing is set on the model
object) and applied by
:func:`autocast_for` around every forward pass LaDa makes (``lada.train.logprobs``,
``lada.eval.generate``), so no call site needs a flag. With CPU autocast, each training run,
scoring pass and generation call also casts the frozen linear weights to bf16 once for the
call (:mod:`lada.accel.cast_weights`; generation folds LoRA into the copy and runs without
autocast), instead of autocast re-casting them at every forward pass.
"""

from __future__ import annotations

import contextlib
import functools
import os
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch

AUTO_BF16_MIN_PARAMS = 20_000_000  # ours: below this autocast costs more than it saves on CPU
_ALIASES = {
    "fp32": "float32",
    "float32": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "auto": "auto",
}


@dataclass(frozen=True)
class Precision:
    weights: torch.dtype  # the dtype the parameters are stored in
    autocast: torch.dtype | None  # forward passes run under torch.autocast(dtype) when set

    def describe(self) -> str:
        w = str(self.weights).removeprefix("torch.")
        return (
            w
            if self.autocast is None
            else f"{w} + {str(self.autocast).removeprefix('torch.')} autocast"
        )


def normalize_dtype(name: str) -> str:
    """``"bf16"`` -> ``"bfloat16"`` etc.; a clear error for unknown names."""
    if name not in _ALIASES:
        raise ValueError(f"dtype={name!r}: expected one of auto, fp32, bf16, fp16 (or float32, …)")
    return _ALIASES[name]


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16) and
    oneDNN may use them: ``ONEDNN_MAX_CPU_ISA`` set to an ISA below them (e.g. ``AVX2``, to
    run as an AVX2-only CPU would) makes it False."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa and isa not in ("ALL", "DEFAULT") and "BF16" not in isa and "AMX" not in isa:
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def choose_precision(dtype: str, device: torch.device, num_params: int) -> Precision:
    """The :class:`Precision` for ``dtype`` on ``device`` for a model of ``num_params``."""
    name = normalize_dtype(dtype)
    cuda = device.type == "cuda"
    if name == "float32":
        return Precision(torch.float32, None)
    if name == "float16":
        return Precision(torch.float16, None)
    if name == "bfloat16":
        return Precision(torch.bfloat16, None) if cuda else Precision(torch.float32, torch.bfloat16)
    # auto
    if cuda:
        ok = torch.cuda.is_bf16_supported()
        return Precision(torch.bfloat16, None) if ok else Precision(torch.float32, None)
    if device.type == "cpu" and cpu_has_native_bf16() and num_params >= AUTO_BF16_MIN_PARAMS:
        return Precision(torch.float32, torch.bfloat16)
    return Precision(torch.float32, None)


_AUTOCAST: weakref.WeakKeyDictionary[torch.nn.Module, torch.dtype] = weakref.WeakKeyDictionary()
_COVERED: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


def autocast_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The dtype ``model``'s forward passes autocast to (None: none), as :func:`apply_precision`
    or :func:`set_autocast` chose it."""
    return _AUTOCAST.get(model)


def set_autocast(model: torch.nn.Module, dtype: torch.dtype | None) -> None:
    """Remember that ``model`` autocasts to ``dtype`` (None: it does not)."""
    if dtype is None:
        _AUTOCAST.pop(model, None)
    else:
        _AUTOCAST[model] = dtype


def casts_cover(model: torch.nn.Module) -> bool:
    """Whether ``model``'s layers compute in its autocast dtype by themselves for now (a
    training copy in place, :func:`lada.accel.cast_weights.cast_linear_copy`)."""
    return model in _COVERED


def set_casts_cover(model: torch.nn.Module, covered: bool) -> None:
    if covered:
        _COVERED.add(model)
    else:
        _COVERED.discard(model)


def apply_precision(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    """Cast the weights and remember the autocast dtype on the model."""
    if next(model.parameters()).dtype != precision.weights:
        model.to(precision.weights)
    set_autocast(model, precision.autocast)
    return model


def autocast_for(model: torch.nn.Module) -> contextlib.AbstractContextManager:
    """``torch.autocast`` with the model's chosen dtype, or a no-op: fp32 / GPU bf16 weights, or
    a training copy in place whose layers compute in that dtype by themselves
    (:func:`casts_cover`, set by :func:`lada.accel.cast_weights.cast_linear_copy`:
    autocast would then only move attention to bf16, slower on CPU)."""
    dtype = autocast_dtype(model)
    if dtype is None or casts_cover(model):
        return contextlib.nullcontext()
    device_type = next(model.parameters()).device.type
    return torch.autocast(device_type=device_type, dtype=dtype)


def describe_model(model: torch.nn.Module) -> str:
    """What ``model`` computes in: ``"float32"``, ``"float32 + bfloat16 autocast"``, …"""
    weights = next(model.parameters()).dtype
    return Precision(weights, autocast_dtype(model)).describe()
