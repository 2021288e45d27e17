"""Weights and KV cache for inference calls (generation, greedy decoding).

* :func:`cast_linear_copy`: for the duration of a call, every linear layer (a peft LoRA layer
  with its adapters folded in) is replaced by :class:`CastLinear`, which holds a copy of its
  effective weight in a compute dtype (bf16) made once, and casts its input to that dtype and
  its output back. Everything else (embeddings, norms, attention, the KV cache, the residual
  stream) keeps the model's own dtype (fp32). This is what bf16 autocast does for matmuls,
  without autocast's re-cast of every frozen fp32 weight at every forward pass (autocast caches
  casts only of weights that require grad, and a LoRA model's base weights do not): decoding
  one token per row reads every weight once per step, so the re-cast used to cost more than
  bf16 saved. The model's own parameters are never touched (no merge / unmerge round-off).
* :class:`PreallocatedLayer` / :func:`preallocated_cache`: a ``DynamicCache`` whose full-attention
  layers write new keys and values into a buffer sized for the whole call, instead of
  concatenating (``torch.cat`` copies the whole cache of every layer at every step).

Measured reasons and numbers: docs/real-models.md ("Speed").
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
    """The weight a peft LoRA linear layer computes with (base + active adapters' deltas), or
    None when ``layer`` is not one."""
    base = getattr(layer, "base_layer", None)
    if not (isinstance(base, nn.Linear) and hasattr(layer, "get_delta_weight")):
        return None
    weight = base.weight
    if not getattr(layer, "merged", False) and not getattr(layer, "disable_adapters", False):
        active = layer.active_adapters
        deltas = [layer.get_delta_weight(a) for a in active if a in layer.lora_A]
        if deltas:
            weight = weight + sum(deltas)
    return weight, base.bias


def _replacements(
    module: nn.Module, dtype: torch.dtype
) -> Iterator[tuple[nn.Module, str, nn.Module]]:
    """``(parent, name, new)`` for every linear layer below ``module`` (LoRA layers whole)."""
    for name, child in module.named_children():
        lora = _lora_effective_weight(child)
        if lora is not None:
            yield module, name, CastLinear(*lora, dtype)
        elif isinstance(child, nn.Linear):
            yield module, name, CastLinear(child.weight, child.bias, dtype)
        else:
            yield from _replacements(child, dtype)


@contextlib.contextmanager
def cast_linear_copy(model: nn.Module, dtype: torch.dtype) -> Iterator[nn.Module]:
    """Every linear layer of ``model`` computes in ``dtype`` from a copy made on entry
    (LoRA adapters folded in); restored on exit. Inference only (the copies take no grads)."""
    with torch.no_grad():
        swaps = [
            (parent, name, getattr(parent, name), new)
            for parent, name, new in _replacements(model, dtype)
        ]
    for parent, name, _, new in swaps:
        setattr(parent, name, new)
    try:
        yield model
    finally:
        for parent, name, old, _ in swaps:
            setattr(parent, name, old)


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
