"""Linear layers computed from a cast copy of their weights, and the decode loop's KV cache.

* :func:`cast_linear_copy`: for the duration of a call (a generation, a training run, a
  scoring pass), linear layers are replaced by :class:`CastLinear`, which holds a copy of the
  layer's weight in a compute dtype (bf16) made once, casts its input to that dtype and its
  output back to the input's dtype. With ``fold_lora`` (inference) every linear layer is
  replaced, a peft LoRA layer whole with its adapters folded into the copy; without it
  (training) only *frozen* linear layers are (the base layers inside LoRA layers, the head),
  so that the adapters still train. The model's own parameters are never touched (no merge /
  unmerge round-off).

  Why (measured, docs/real-models.md): this is what bf16 autocast does for matmuls, without
  autocast's re-cast of every frozen fp32 weight at every forward pass (autocast caches casts
  only of weights that require grad; a LoRA model's base weights do not). And since the
  outputs come back in the input's dtype, the residual stream, norms, attention and KV cache
  stay fp32: on this CPU (AVX512-BF16, no AMX) fp32 attention is faster than bf16 attention,
  forward and backward.
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


class CastLinear(nn.Module):
    """``y = x W^T + b`` computed in ``weight.dtype`` (a pre-cast copy); ``y`` in ``x``'s dtype."""

    def __init__(self, weight: Tensor, bias: Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().to(dtype), persistent=False)
        self.register_buffer(
            "bias", None if bias is None else bias.detach().to(dtype), persistent=False
        )
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        y = nn.functional.linear(x.to(self.weight.dtype), self.weight, self.bias)
        return y.to(x.dtype)


def _lora_effective_weight(layer: nn.Module) -> tuple[Tensor, Tensor | None] | None:
    """The weight a (vanilla) peft LoRA linear layer computes with (base + the active
    adapters' deltas), or None when ``layer`` is not one."""
    base = getattr(layer, "base_layer", None)
    if not (isinstance(base, nn.Linear) and hasattr(layer, "get_delta_weight")):
        return None
    if getattr(layer, "lora_variant", None):  # DoRA and other variants: not folded here
        return None
    weight = base.weight
    if not getattr(layer, "merged", False) and not getattr(layer, "disable_adapters", False):
        deltas = [layer.get_delta_weight(a) for a in layer.active_adapters if a in layer.lora_A]
        if deltas:
            weight = weight + sum(deltas)
    return weight, base.bias


def _replacements(
    module: nn.Module, dtype: torch.dtype, fold_lora: bool
) -> Iterator[tuple[nn.Module, str, nn.Module]]:
    """``(parent, name, new)`` for the linear layers below ``module`` that get a cast copy."""
    for name, child in module.named_children():
        lora = _lora_effective_weight(child) if fold_lora else None
        if lora is not None:
            yield module, name, CastLinear(*lora, dtype)
        elif isinstance(child, nn.Linear) and (fold_lora or not child.weight.requires_grad):
            yield module, name, CastLinear(child.weight, child.bias, dtype)
        elif not isinstance(child, nn.Linear):
            yield from _replacements(child, dtype, fold_lora)


@contextlib.contextmanager
def cast_linear_copy(
    model: nn.Module, dtype: torch.dtype, *, fold_lora: bool = True
) -> Iterator[nn.Module]:
    """Linear layers of ``model`` compute in ``dtype`` from copies made on entry, restored on
    exit. ``fold_lora`` (inference): every linear layer, LoRA adapters folded in; else
    (training) only the frozen ones (weights that do not require grad), adapters untouched."""
    with torch.no_grad():
        swaps = [
            (parent, name, getattr(parent, name), new)
            for parent, name, new in _replacements(model, dtype, fold_lora)
        ]
    for parent, name, _, new in swaps:
        setattr(parent, name, new)
    try:
        yield model
    finally:
        for parent, name, old, _ in swaps:
            setattr(parent, name, old)


@contextlib.contextmanager
def frozen_cast_copy(model: nn.Module) -> Iterator[nn.Module]:
    """For a model that autocasts to a lower dtype (``model.lada_autocast``, bf16 on a CPU with
    native bf16): its frozen linear layers compute from a copy in that dtype for the duration
    (:func:`cast_linear_copy` without folding); other models pass through."""
    dtype = getattr(model, "lada_autocast", None)
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
