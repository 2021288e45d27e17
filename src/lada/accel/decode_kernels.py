"""Fused C kernels for the lean decoder's decode step on CPU (``kernels/decode_step.c``).

Why (measured, docs/real-models.md): at batch 16 a decode step of the real
config's 135 M model spent less time streaming its packed bf16 weights than in ~45 small
PyTorch ops a layer (RMSNorm, casts, rotary, cache writes, one-query attention as 48 tiny
GEMMs, SwiGLU) on tensors of a few KB, i.e. in per-call overhead. The C file does each run of
them between two matmuls in one call (five calls a layer), with PyTorch's arithmetic (see its
header for what is bit-identical and what agrees to fp32 round-off).

The file is compiled once per machine and source (:mod:`lada.accel.c_build`: the system C
compiler, ``-O3 -march=native``, cached under ``$LADA_CACHE/kernels/``) and loaded with
ctypes. :func:`kernels_unsupported` says why they cannot run here (no compiler, a failed
build, a probe that disagrees with PyTorch); the lean decoder then runs its PyTorch ops and
says so in the log once (``kernels=None``), or refuses (``kernels=True``).
``runtime.accel`` other than ``native`` turns them off where ``kernels`` is None (a whole run).
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path

import torch
from torch import Tensor

from lada.accel import c_build
from lada.accel.c_build import KERNELS, KernelBuildError, threads_for

log = logging.getLogger(__name__)

SOURCE = KERNELS / "decode_step.c"

_P = ctypes.c_void_p
_I = ctypes.c_int
_F = ctypes.c_float
_SIGNATURES: dict[str, list[type]] = {
    "lada_add_rms_norm": [_P, _P, _P, _F, _I, _I, _I, _P],
    "lada_add_bf16": [_P, _P, _I, _I, _I],
    "lada_rotary_cache": [_P, _P, _P, _I, _I, _I, _I, _P, _P, _P, _I, _I],
    "lada_attend_one": [_P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _F, _I, _P, _P],
    "lada_silu_mul": [_P, _I, _I, _I, _P],
    "lada_silu_mul_backward": [_P, _P, _I, _I, _I, _P],
}


def library_path() -> Path:
    """Where this machine's compiled ``decode_step.c`` lives (built if missing)."""
    return c_build.library_path(SOURCE)


@functools.cache
def _library() -> ctypes.CDLL:
    return c_build.load_library(SOURCE, _SIGNATURES)


@functools.cache
def _probe() -> str | None:
    """None when the kernels build, load and match PyTorch's ops on a small probe."""
    try:
        lib = _library()
    except (KernelBuildError, OSError) as err:
        return str(err)
    from lada.accel.ops import rms_norm, rotate, signed_sin

    gen = torch.Generator().manual_seed(0)
    rows, n = 3, 40
    h = torch.randn(rows, n, generator=gen)
    w = torch.randn(n, generator=gen)
    delta = torch.randn(rows, n, generator=gen).bfloat16()
    want = rms_norm(h + delta, w, 1e-5).bfloat16()
    got = torch.empty(rows, n, dtype=torch.bfloat16)
    h2 = h.clone()
    lib.lada_add_rms_norm(
        h2.data_ptr(), delta.data_ptr(), w.data_ptr(), 1e-5, rows, n, 1, got.data_ptr()
    )
    if not torch.equal(h2, h + delta) or (got.float() - want.float()).abs().max() > 0.02:
        return "the compiled RMSNorm kernel disagrees with PyTorch on a probe"
    x = torch.randn(rows, 8, generator=gen).bfloat16()
    cos, sin = torch.randn(rows, 8, generator=gen), signed_sin(torch.randn(rows, 8, generator=gen))
    q = torch.empty(rows, 1, 8)
    keys, values = torch.zeros(rows, 1, 2, 8), torch.zeros(rows, 1, 2, 8, dtype=torch.bfloat16)
    qkv = torch.cat([x, x, x], dim=1)
    lib.lada_rotary_cache(
        qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(), rows, 1, 1, 8,
        q.data_ptr(), keys.data_ptr(), values.data_ptr(), 2, 1,
    )  # fmt: skip
    if not torch.equal(q[:, 0], rotate(x.float(), cos, sin)):
        return "the compiled rotary kernel disagrees with PyTorch on a probe"
    for d in (16, 24):  # the vector path (where the CPU has it) and the plain one
        q = torch.randn(2, 2, d, generator=gen)
        keys = torch.randn(2, 1, 6, d, generator=gen)
        values = torch.randn(2, 1, 6, d, generator=gen).bfloat16()
        mask = torch.zeros(2, 6)
        mask[0, 0] = float("-inf")
        scores = q @ keys[:, 0, :5].transpose(-1, -2) * d**-0.5 + mask[:, None, :5]
        want = (scores.softmax(-1) @ values[:, 0, :5].float()).reshape(2, 2 * d)
        out = torch.empty(2, 2 * d, dtype=torch.bfloat16)
        scratch = torch.empty(2 * 5)
        lib.lada_attend_one(
            q.data_ptr(), keys.data_ptr(), values.data_ptr(), mask.data_ptr(), 2, 2, 1, d, 6, 5,
            d**-0.5, 1, scratch.data_ptr(), out.data_ptr(),
        )  # fmt: skip
        if not torch.allclose(out.float(), want, rtol=1e-2, atol=1e-3):
            return "the compiled attention kernel disagrees with PyTorch on a probe"
    gate_up = torch.randn(2, 2 * 40, generator=gen).bfloat16()
    out = torch.empty(2, 40, dtype=torch.bfloat16)
    lib.lada_silu_mul(gate_up.data_ptr(), 2, 40, 1, out.data_ptr())
    gate, up = gate_up.float().chunk(2, dim=-1)
    if not torch.allclose(out.float(), torch.nn.functional.silu(gate) * up, rtol=1e-2, atol=1e-3):
        return "the compiled SwiGLU kernel disagrees with PyTorch on a probe"
    grad = torch.randn(2, 40, generator=gen).bfloat16()
    got = torch.empty(2, 80, dtype=torch.bfloat16)
    lib.lada_silu_mul_backward(gate_up.data_ptr(), grad.data_ptr(), 2, 40, 1, got.data_ptr())
    with torch.enable_grad():  # the probe may first run inside a no_grad block
        leaf = gate_up.float().requires_grad_(True)
        gate, up = leaf.chunk(2, dim=-1)
        (torch.nn.functional.silu(gate) * up).backward(grad.float())
    if not torch.allclose(got.float(), leaf.grad, rtol=1e-2, atol=1e-3):
        return "the compiled SwiGLU backward kernel disagrees with PyTorch on a probe"
    return None


def kernels_unsupported(
    device: torch.device | str,
    residual: torch.dtype,
    compute: torch.dtype,
    activation: str = "silu",
) -> str | None:
    """Why the kernels cannot run a lean decoder with this device, these dtypes and this MLP
    activation (None when they can): they are for CPU, an fp32 residual stream, bf16 matmuls
    and SwiGLU (SiLU)."""
    if activation != "silu":
        return f"MLP activation {activation!r} (the kernels compute SiLU)"
    if torch.device(device).type != "cpu":
        return f"the model is on {torch.device(device).type} (the kernels are for CPU)"
    if residual != torch.float32 or compute != torch.bfloat16:
        return f"residual {residual} / matmuls {compute} (the kernels are for fp32 / bf16)"
    return _probe()


def should_use_kernels(
    device: torch.device | str,
    residual: torch.dtype,
    compute: torch.dtype,
    kernels: bool | None,
    activation: str = "silu",
) -> bool:
    """``kernels`` True demands them (an error says why they cannot run), False refuses, None
    uses them where :func:`kernels_unsupported` allows, logging the reason once where it does
    not for bf16 matmuls on CPU (elsewhere they were never an option), unless the environment
    sets ``runtime.accel`` other than ``native``."""
    return c_build.choose(
        kernels,
        lambda: kernels_unsupported(device, residual, compute, activation),
        "the C kernels of the decode step and SwiGLU",
        log,
        say=torch.device(device).type == "cpu" and compute == torch.bfloat16,
    )


def _check(t: Tensor, dtype: torch.dtype, name: str) -> int:
    if t.dtype != dtype or not t.is_contiguous() or t.device.type != "cpu":
        raise ValueError(
            f"{name}: want a contiguous {dtype} CPU tensor, got {t.dtype} {t.stride()}"
        )
    return t.data_ptr()


def add_rms_norm(h: Tensor, delta: Tensor | None, weight: Tensor, eps: float) -> Tensor:
    """``h += delta`` in place (fp32 ``[..., n]``; skipped for None), then RMSNorm of ``h``
    scaled by ``weight``, returned in bf16 (the next matmul's input), shaped like ``h``."""
    n = h.shape[-1]
    if (delta is not None and delta.shape != h.shape) or weight.shape != (n,):
        raise ValueError(f"add_rms_norm: h {tuple(h.shape)}, weight {tuple(weight.shape)}")
    out = torch.empty(h.shape, dtype=torch.bfloat16)
    _library().lada_add_rms_norm(
        _check(h, torch.float32, "h"),
        None if delta is None else _check(delta, torch.bfloat16, "delta"),
        _check(weight, torch.float32, "weight"), eps, h.numel() // n, n,
        threads_for(h.numel()), out.data_ptr(),
    )  # fmt: skip
    return out


def add_bf16(h: Tensor, delta: Tensor) -> None:
    """``h += delta`` in place (``h`` fp32, ``delta`` bf16, same shape)."""
    n = h.shape[-1]
    if delta.shape != h.shape:
        raise ValueError(f"add_bf16: h {tuple(h.shape)}, delta {tuple(delta.shape)}")
    _library().lada_add_bf16(
        _check(h, torch.float32, "h"), _check(delta, torch.bfloat16, "delta"), h.numel() // n,
        n, threads_for(h.numel()),
    )  # fmt: skip


def rotary_cache(
    qkv: Tensor, cos: Tensor, sin_signed: Tensor, heads: int, kv_heads: int,
    keys: Tensor, values: Tensor, position: int,
) -> Tensor:  # fmt: skip
    """One new position per row: ``qkv`` ``[rows, (heads + 2 kv_heads) d]`` (bf16), ``cos`` /
    ``sin_signed`` ``[rows, d]``. Writes the rotated key into ``keys`` ``[rows, kv_heads,
    capacity, d]`` (fp32) and the value into ``values`` (the same shape, bf16: it is the bf16
    matmul's output, so exact) at ``position``; returns the rotated queries ``[rows, heads,
    d]`` (fp32)."""
    rows, _, capacity, d = keys.shape
    if qkv.shape != (rows, (heads + 2 * kv_heads) * d) or cos.shape != (rows, d):
        raise ValueError(
            f"rotary_cache: qkv {tuple(qkv.shape)} / cos {tuple(cos.shape)} do not "
            f"fit keys {tuple(keys.shape)} with {heads} heads"
        )
    if sin_signed.shape != cos.shape or values.shape != keys.shape or not 0 <= position < capacity:
        raise ValueError(f"rotary_cache: position {position} / shapes do not fit the cache")
    q = torch.empty(rows, heads, d)
    _library().lada_rotary_cache(
        _check(qkv, torch.bfloat16, "qkv"), _check(cos, torch.float32, "cos"),
        _check(sin_signed, torch.float32, "sin"), rows, heads, kv_heads, d, q.data_ptr(),
        _check(keys, torch.float32, "keys"), _check(values, torch.bfloat16, "values"),
        capacity, position,
    )  # fmt: skip
    return q


def attend_one(q: Tensor, keys: Tensor, values: Tensor, mask: Tensor, length: int, scale: float):
    """One query per row against the first ``length`` cached positions: ``q`` ``[rows, heads,
    d]``, ``keys`` ``[rows, kv_heads, capacity, d]`` (fp32), ``values`` (the same, bf16),
    ``mask`` ``[rows, capacity]`` (additive). Returns ``[rows, heads * d]`` in bf16 (the output projection's input)."""
    rows, heads, d = q.shape
    kv_heads, capacity = keys.shape[1], keys.shape[2]
    if keys.shape != (rows, kv_heads, capacity, d) or values.shape != keys.shape:
        raise ValueError(f"attend_one: q {tuple(q.shape)} does not fit keys {tuple(keys.shape)}")
    if mask.shape != (rows, capacity) or not 0 < length <= capacity or heads % kv_heads:
        raise ValueError(f"attend_one: mask {tuple(mask.shape)} / length {length} do not fit")
    out = torch.empty(rows, heads * d, dtype=torch.bfloat16)
    threads = max(1, min(torch.get_num_threads(), rows * kv_heads))
    scratch = torch.empty(threads * (heads // kv_heads) * length)
    _library().lada_attend_one(
        _check(q, torch.float32, "q"), _check(keys, torch.float32, "keys"),
        _check(values, torch.bfloat16, "values"), _check(mask, torch.float32, "mask"),
        rows, heads, kv_heads, d, capacity, length, scale, threads, scratch.data_ptr(),
        out.data_ptr(),
    )  # fmt: skip
    return out


def silu_mul(gate_up: Tensor) -> Tensor:
    """``[..., 2 i]`` (bf16, gate then up) -> ``silu(gate) * up`` ``[..., i]`` in bf16."""
    width = gate_up.shape[-1]
    if width % 2:
        raise ValueError(f"silu_mul: gate|up width {width} is odd")
    out = torch.empty(*gate_up.shape[:-1], width // 2, dtype=torch.bfloat16)
    _library().lada_silu_mul(
        _check(gate_up, torch.bfloat16, "gate_up"), gate_up.numel() // width, width // 2,
        threads_for(gate_up.numel()), out.data_ptr(),
    )  # fmt: skip
    return out


def silu_mul_backward(gate_up: Tensor, grad: Tensor) -> Tensor:
    """The gradient of :func:`silu_mul` w.r.t. ``gate_up`` (``[..., 2 i]``, bf16) given the
    gradient ``grad`` (``[..., i]``, bf16) of its output; fp32 arithmetic, rounded once."""
    width = gate_up.shape[-1]
    if width % 2 or grad.shape != (*gate_up.shape[:-1], width // 2):
        raise ValueError(
            f"silu_mul_backward: gate_up {tuple(gate_up.shape)}, grad {tuple(grad.shape)}"
        )
    out = torch.empty(gate_up.shape, dtype=torch.bfloat16)
    _library().lada_silu_mul_backward(
        _check(gate_up, torch.bfloat16, "gate_up"), _check(grad, torch.bfloat16, "grad"),
        gate_up.numel() // width, width // 2, threads_for(gate_up.numel()), out.data_ptr(),
    )  # fmt: skip
    return out
