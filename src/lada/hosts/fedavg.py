"""FedCoLLM's FedAvg of homogeneous SLMs' trainable weights, carried as one float32 array.

The client sends ``(names, shapes, flat)`` (:class:`lada.federation.protocol.WeightsRes`); the
server averages the flat arrays weighted by each client's number of private training samples
and sends the average back (``SetWeightsIns``). Clients whose architectures (names or shapes)
differ cannot be averaged: :func:`fedavg` raises :class:`HeterogeneousModelsError`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


class HeterogeneousModelsError(ValueError):
    pass


@dataclass
class FlatState:
    names: list[str]
    shapes: list[list[int]]
    flat: np.ndarray  # float32

    @property
    def shapes_json(self) -> str:
        return json.dumps(self.shapes)


def flatten(state: dict[str, torch.Tensor]) -> FlatState:
    names = sorted(state)
    shapes = [list(state[n].shape) for n in names]
    parts = [state[n].detach().float().cpu().reshape(-1).numpy() for n in names]
    flat = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return FlatState(names, shapes, flat.astype(np.float32))


def unflatten(
    names: Sequence[str], shapes: Sequence[Sequence[int]], flat: np.ndarray
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for n, shape in zip(names, shapes, strict=True):
        size = int(np.prod(shape)) if len(shape) else 1
        out[n] = torch.from_numpy(np.array(flat[offset : offset + size])).reshape(list(shape))
        offset += size
    if offset != flat.size:
        raise ValueError(f"flat array has {flat.size} values, shapes need {offset}")
    return out


def load_flat(model: torch.nn.Module, state: FlatState) -> int:
    """Copy a flattened state into ``model``'s parameters of the same names; returns the number
    of values. Raises ValueError for names the model does not have."""
    tensors = unflatten(state.names, state.shapes, state.flat)
    params = dict(model.named_parameters())
    unknown = [n for n in tensors if n not in params]
    if unknown:
        raise ValueError(f"averaged weights do not match this SLM (unknown {unknown[:3]})")
    with torch.no_grad():
        for n, t in tensors.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))
    return int(state.flat.size)


def fedavg(states: Sequence[FlatState], weights: Sequence[float] | None = None) -> FlatState:
    """Weighted average (weights default to equal) of homogeneous flattened states."""
    if not states:
        raise ValueError("fedavg needs at least one state")
    first = states[0]
    for i, s in enumerate(states[1:], start=1):
        if s.names != first.names or s.shapes != first.shapes:
            raise HeterogeneousModelsError(
                "FedAvg needs homogeneous SLMs (same parameter names and shapes); "
                f"client state {i} differs from client state 0 - use host sft or fedcot "
                "for heterogeneous SLMs"
            )
    w = np.asarray(weights if weights is not None else [1.0] * len(states), dtype=np.float64)
    if w.shape[0] != len(states) or w.sum() <= 0:
        raise ValueError("weights must be one positive number per state")
    w = w / w.sum()
    avg = sum(wi * s.flat.astype(np.float64) for wi, s in zip(w, states, strict=True))
    return FlatState(
        list(first.names), [list(x) for x in first.shapes], np.asarray(avg, np.float32)
    )
