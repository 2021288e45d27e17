"""Linear layers computed from a cast copy of their weights, and the decode loop's KV cache.

* :func:`cast_linear_copy`: for the duration of a call (a generation, a training run, a
  scoring pass), linear layers are replaced by :class:`CastLinear`, which holds a copy of the
  layer's weight in a compute dtype (bf16) made once, casts its input to that dtype and its
  output back to the input's dtype. With ``fold_lora`` (inference) every linear layer is
  replaced, a peft LoRA layer whole with its adapters folded into the copy; without it
  (training) the *frozen* linear layers are (e.g. the head) and each plain LoRA layer becomes
  a :class:`CastLoraLinear` (its base weight a cast copy, its adapters its own trainable
  parameters, computed in the compute dtype as autocast computes them), so that the adapters
  still train; layers that read the same input (q/k/v, gate/up) share one cast of it
  (:class:`InputCast`). The model's own parameters are never touched (no merge / unmerge
  round-off).

  Why (measured, docs/real-models.md): this is what bf16 autocast does for matmuls, without
  autocast's re-cast of every frozen fp32 weight at every forward pass (autocast caches casts
  only of weights that require grad; a LoRA model's base weights do not). And since the
  outputs come back in the input's dtype, the residual stream, norms, attention and KV cache
  stay fp32: on CPUs with AVX512-BF16 but no AMX fp32 attention is faster than bf16 attention,
  forward and backward. A training copy that covers every weight matrix (each LoRA layer a
  :class:`CastLoraLinear`) runs without autocast (:func:`lada.accel.precision.casts_cover`), which would
  otherwise move attention to bf16 (+30 % training tokens/s on the real config's LoRA).
* :class:`PreallocatedLayer` / :func:`preallocated_cache`: a ``DynamicCache`` whose full-attention
  layers write new keys and values into a buffer sized for the whole call, instead of
  concatenating (``torch.cat`` copies the whole cache of every layer at every step).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

from lada.accel.cast_swiglu import (
    CastSwiGLU,
    LoraAdapters,
    adapter_terms,
    is_swiglu_mlp,
    swiglu_kernels_usable,
)
from lada.accel.ops import is_plain_lora  # noqa: F401 (public)
from lada.accel.precision import autocast_dtype, set_casts_cover


class InputCast:
    """The cast of the last input a group of layers saw, reused while the same tensor comes
    again: a decoder layer's q/k/v projections (and gate/up) read one input, so it is cast
    once, not once per projection (and its gradient is cast back once in the backward pass).

    The hit test is identity (the memo holds the tensor, so its id cannot be reused), the
    tensor's version counter (an in-place change misses) and the grad mode (a cast made under
    ``no_grad`` is never handed to a pass that records gradients)."""

    __slots__ = ("source", "version", "grad", "cast", "casts")

    def __init__(self) -> None:
        self.casts = 0  # casts made (misses), for tests and diagnostics
        self.clear()

    def clear(self) -> None:
        self.source: Tensor | None = None
        self.version, self.grad, self.cast = -1, False, None

    def __call__(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        if x.dtype == dtype:
            return x
        grad = torch.is_grad_enabled()
        hit = self.source is x and self.version == x._version and self.grad == grad
        if not (hit and self.cast is not None and self.cast.dtype == dtype):
            self.source, self.version, self.grad, self.cast = x, x._version, grad, x.to(dtype)
            self.casts += 1
        return self.cast


class CastLinear(nn.Module):
    """``y = x W^T + b`` computed in ``weight.dtype`` (a pre-cast copy); ``y`` in ``x``'s dtype.

    With an :class:`InputCast` shared by the layers of a model, layers reading the same input
    share its cast."""

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        dtype: torch.dtype,
        input_cast: InputCast | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().to(dtype), persistent=False)
        self.register_buffer(
            "bias", None if bias is None else bias.detach().to(dtype), persistent=False
        )
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.input_cast = input_cast

    def cast_input(self, x: Tensor) -> Tensor:
        if self.input_cast is None:
            return x.to(self.weight.dtype)
        return self.input_cast(x, self.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        y = nn.functional.linear(self.cast_input(x), self.weight, self.bias)
        return y.to(x.dtype)


class CastLoraLinear(CastLinear):
    """A peft LoRA layer (:func:`is_plain_lora`, not merged) for training: its frozen base
    weight as a pre-cast copy, its adapters the layer's own trainable parameters.

    ``y = x W^T + b + sum_a s_a * B_a (A_a dropout_a(x))``, all in ``dtype`` (bf16: as bf16
    autocast computes peft's layer), from one cast of ``x`` shared by the adapters (and, through
    ``input_cast``, by the layers that read the same input); the adapter's output is added by
    ``addmm`` with ``s_a`` folded into the cast of ``B_a`` (no ``[tokens, out]`` scaling pass);
    ``y`` comes back in ``x``'s dtype. The adapters' parameters, dropout modules, active set and
    ``disable_adapters`` are read from ``layer`` at every call (peft's own switches, e.g.
    ``disable_adapter()``, made while the copy is in place do not reach ``layer``: it is out of
    the module tree; LaDa's training runs and scoring passes make none)."""

    def __init__(
        self, layer: nn.Module, dtype: torch.dtype, input_cast: InputCast | None = None
    ) -> None:
        base = layer.base_layer
        super().__init__(base.weight, base.bias, dtype, input_cast)
        # the layer's own adapter tables, registered under peft's names: the parameters keep
        # their names (``...q_proj.lora_A.default.weight``) and optimisers find them
        self.lora_A, self.lora_B, self.lora_dropout = layer.lora_A, layer.lora_B, layer.lora_dropout
        self.lora = [layer]  # flags and scaling (a list: not a submodule, no second path)

    def forward(self, x: Tensor) -> Tensor:
        xc = self.cast_input(x)
        y = nn.functional.linear(xc, self.weight, self.bias)
        terms = adapter_terms(self, xc, self.weight.dtype)
        if terms:
            flat = y.reshape(-1, y.shape[-1])
            for h, b in terms:
                flat = torch.addmm(flat, h.reshape(-1, h.shape[-1]), b.t())
            y = flat.view(y.shape)
        return y.to(x.dtype)


def write_effective_weight(layer: nn.Module, out: Tensor) -> Tensor | None:
    """Write the weight ``layer`` computes with into ``out`` (``[out, in]``, any dtype) and
    return its bias: a plain linear layer's own weight; a LoRA layer's (:func:`is_plain_lora`)
    base weight plus its active adapters' deltas ``scaling * B @ A``, summed in fp32 and cast
    once.

    The sum runs in blocks of rows (``addmm`` per block, then one cast into ``out``), so each
    fp32 block stays in cache. peft's ``get_delta_weight`` makes a full delta matrix, then
    scales it, adds it and casts the sum (four passes over memory per projection). Building
    SmolLM2-135M's packed decoder weights (the real config's LoRA), once per generation call,
    measured 0.21 s that way and 0.17 s this way (best of 5 in one process; 0.65-0.78 s vs
    0.29-0.44 s in a standalone loop), and the fp32 temporaries are one block, not a matrix."""
    base = getattr(layer, "base_layer", None)
    if base is None:  # a plain linear layer
        out.copy_(layer.weight.detach())
        return layer.bias
    weight = base.weight.detach()
    adapters = []
    if not getattr(layer, "merged", False) and not getattr(layer, "disable_adapters", False):
        adapters = [a for a in layer.active_adapters if a in layer.lora_A]
    if not adapters:
        out.copy_(weight)
        return base.bias
    factors = [
        (
            layer.lora_B[a].weight.detach().float(),
            layer.lora_A[a].weight.detach().float(),
            float(layer.scaling[a]),
        )
        for a in adapters
    ]
    (b0, a0, s0), *rest = factors
    block = max(1, _BLOCK_BYTES // (4 * weight.shape[1]))
    for start in range(0, weight.shape[0], block):
        rows = slice(start, start + block)
        # out of place first: on fp32 weights .float() is the weight itself, left untouched
        acc = torch.addmm(weight[rows].float(), b0[rows], a0, alpha=s0)
        for b, a, scale in rest:
            acc.addmm_(b[rows], a, alpha=scale)
        out[rows].copy_(acc)
    return base.bias


_BLOCK_BYTES = 512 * 1024  # fp32 rows summed at a time by write_effective_weight (stays in L2)


def _folded_copy(layer: nn.Module, dtype: torch.dtype) -> CastLinear:
    """A :class:`CastLinear` computing what LoRA layer ``layer`` computes, adapters folded in."""
    weight = torch.empty_like(layer.base_layer.weight, dtype=dtype)
    return CastLinear(weight, write_effective_weight(layer, weight), dtype)


def _replacements(
    module: nn.Module, dtype: torch.dtype, fold_lora: bool, memo: InputCast | None = None
) -> Iterator[tuple[nn.Module, str, nn.Module]]:
    """``(parent, name, new)`` for the linear layers below ``module`` that get a cast copy
    (sharing ``memo``, when given, for their input casts)."""
    for name, child in module.named_children():
        if fold_lora and is_plain_lora(child):
            yield module, name, _folded_copy(child, dtype)
        elif not fold_lora and is_plain_lora(child) and not getattr(child, "merged", False):
            yield module, name, CastLoraLinear(child, dtype, memo)
        elif isinstance(child, nn.Linear) and (fold_lora or not child.weight.requires_grad):
            yield module, name, CastLinear(child.weight, child.bias, dtype, memo)
        elif dtype == torch.bfloat16 and _fused_swiglu(child, fold_lora):
            yield module, name, CastSwiGLU(child, dtype)
        elif not isinstance(child, nn.Linear):
            yield from _replacements(child, dtype, fold_lora, memo)


def _fused_swiglu(module: nn.Module, fold_lora: bool) -> bool:
    """Whether ``module`` becomes a :class:`CastSwiGLU`: a known SwiGLU MLP, where the C kernels
    run, of plain linear layers (inference: any; training: frozen) or, in training, of plain
    LoRA layers too (their adapters stay trainable; inference folds LoRA layers one by one)."""
    ok = is_swiglu_mlp(module, trainable_ok=fold_lora, lora_ok=not fold_lora)
    return ok and swiglu_kernels_usable()


@contextlib.contextmanager
def cast_linear_copy(
    model: nn.Module, dtype: torch.dtype, *, fold_lora: bool = True
) -> Iterator[nn.Module]:
    """Linear layers of ``model`` compute in ``dtype`` from copies made on entry, restored on
    exit. ``fold_lora`` (inference): every linear layer, LoRA adapters folded in; else
    (training) the frozen ones (weights that do not require grad) and each plain LoRA layer as
    a :class:`CastLoraLinear` (its base weight copied, its adapters its own trainable
    parameters), with one input cast shared by layers that read the same tensor
    (:class:`InputCast`)."""
    memo = None if fold_lora else InputCast()
    with torch.no_grad():
        swaps = [
            (parent, name, getattr(parent, name), new)
            for parent, name, new in _replacements(model, dtype, fold_lora, memo)
        ]
    for parent, name, _, new in swaps:
        setattr(parent, name, new)
    covered = not fold_lora and _covers_every_matmul(model)
    if covered:
        set_casts_cover(model, True)  # lada.accel.precision.autocast_for: no autocast needed
    try:
        yield model
    finally:
        for parent, name, old, _ in swaps:
            setattr(parent, name, old)
        if covered:
            set_casts_cover(model, False)
        if memo is not None:
            memo.clear()


def _covers_every_matmul(model: nn.Module) -> bool:
    """Whether every weight matrix of ``model`` outside its embeddings now computes in the
    copy's dtype by itself: a cast copy, or an adapter of a :class:`CastLoraLinear`. Then
    autocast has nothing left to cast but attention, which stays faster in fp32 on CPU
    (docs/real-models.md), so the copy's forward passes run without it."""
    adapters = {
        id(m)
        for layer in model.modules()
        if isinstance(layer, CastLoraLinear | LoraAdapters)
        for table in (layer.lora_A, layer.lora_B)
        for m in table.values()
    }
    for m in model.modules():
        if isinstance(m, CastLinear | CastSwiGLU | nn.Embedding) or id(m) in adapters:
            continue
        weight = getattr(m, "weight", None)
        if isinstance(weight, Tensor) and weight.ndim >= 2:
            return False
    return True


@contextlib.contextmanager
def frozen_cast_copy(model: nn.Module) -> Iterator[nn.Module]:
    """For a model that autocasts to a lower dtype (:func:`lada.accel.precision.autocast_dtype`, bf16 on a CPU with
    native bf16): its frozen linear layers compute from a copy in that dtype for the duration
    (:func:`cast_linear_copy` without folding); other models pass through."""
    dtype = autocast_dtype(model)
    if dtype is None:
        yield model
        return
    with cast_linear_copy(model, dtype, fold_lora=False):
        yield model


class PreallocatedLayer(DynamicLayer):
    """A full-attention cache layer whose keys/values live in a buffer of ``capacity``
    positions, allocated at the first update; returns views of the filled part."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def update(
        self, key_states: Tensor, value_states: Tensor, *args, **kwargs
    ) -> tuple[Tensor, Tensor]:
        n = key_states.shape[-2]
        if not self.is_initialized:
            self.device = key_states.device
            b, h, _, d = key_states.shape
            cap = max(self.capacity, n)
            self._k = key_states.new_empty(b, h, cap, d)
            self._v = value_states.new_empty(b, h, cap, value_states.shape[-1])
            self.is_initialized = True
        if self.length + n > self._k.shape[-2]:  # past the planned capacity: grow (rare)
            grow = self.length + n
            self._k = torch.cat(
                [self._k, self._k.new_empty(*self._k.shape[:2], grow, self._k.shape[-1])], dim=-2
            )
            self._v = torch.cat(
                [self._v, self._v.new_empty(*self._v.shape[:2], grow, self._v.shape[-1])], dim=-2
            )
        self._k[:, :, self.length : self.length + n] = key_states
        self._v[:, :, self.length : self.length + n] = value_states
        self.length += n
        self.keys = self._k[:, :, : self.length]
        self.values = self._v[:, :, : self.length]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: Tensor) -> None:
        if self.is_initialized:
            self._k, self._v = self._k[indices], self._v[indices]
            self.keys = self._k[:, :, : self.length]
            self.values = self._v[:, :, : self.length]

    def reset(self) -> None:
        self.length = 0
        super().reset()


def preallocated_cache(model: PreTrainedModel, capacity: int) -> DynamicCache:
    """``DynamicCache(config=model.config)`` with its full-attention layers preallocated for
    ``capacity`` positions (sliding-window and other layer kinds are left as they are)."""
    cache = DynamicCache(config=model.config)
    cache.layers = [
        PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer
        for layer in cache.layers
    ]
    return cache
