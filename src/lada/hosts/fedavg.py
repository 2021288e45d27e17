"""FedCoLLM's FedAvg of homogeneous SLMs' trainable weights, carried as one float32 array.

The client sends ``(names, shapes, flat)`` (:class:`lada.federation.protocol.WeightsRes`); the
server averages the flat arrays weighted by each client's number of private training samples
and sends the average back (``SetWeightsIns``). Clients whose architectures (names or shapes)
differ cannot be averaged: :func:`fedavg` raises :class:`HeterogeneousModelsError`.

Robust options (``hosts.fedcollm.aggregate`` and friends, :func:`robust_fedavg`): the
coordinate-wise median or trimmed mean of Flower's strategies instead of the weighted mean, each
client's update (its weights minus the server's) clipped to an L2 norm as Flower's DP-FedAvg
clips it, and each client's ``num_samples`` clipped so that no client outweighs the smallest
by more than a given factor.
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


def _homogeneous(states: Sequence[FlatState]) -> FlatState:
    """The first state, once all have its names and shapes."""
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
    return first


def fedavg(states: Sequence[FlatState], weights: Sequence[float] | None = None) -> FlatState:
    """Weighted average (weights default to equal) of homogeneous flattened states."""
    first = _homogeneous(states)
    w = np.asarray(weights if weights is not None else [1.0] * len(states), dtype=np.float64)
    if w.shape[0] != len(states) or w.sum() <= 0:
        raise ValueError("weights must be one positive number per state")
    w = w / w.sum()
    avg = sum(wi * s.flat.astype(np.float64) for wi, s in zip(w, states, strict=True))
    return FlatState(
        list(first.names), [list(x) for x in first.shapes], np.asarray(avg, np.float32)
    )


def clip_counts(counts: Sequence[int], max_ratio: float | None) -> list[float]:
    """FedAvg weights from clients' ``num_samples``: at least 1 each, and (``max_ratio``) at most
    ``max_ratio`` times the smallest, so that no client's claimed count can outweigh the rest."""
    w = [float(max(int(c), 1)) for c in counts]
    if max_ratio is None or not w:
        return w
    cap = max_ratio * min(w)
    return [min(x, cap) for x in w]


def clip_update(state: FlatState, reference: np.ndarray, max_norm: float) -> FlatState:
    """``state`` with its update (``state.flat - reference``) clipped to L2 norm ``max_norm``
    (Flower's ``compute_clip_model_update``, the FlatClip of DP-FedAvg)."""
    from flwr.supercore.differential_privacy import compute_clip_model_update

    if reference.shape != state.flat.shape:
        raise HeterogeneousModelsError("the reference weights differ in size from a client's")
    params = [state.flat.astype(np.float64)]
    if float(np.linalg.norm(params[0] - reference)) > max_norm:  # zero norm: nothing to clip
        compute_clip_model_update(params, [reference.astype(np.float64)], max_norm)
    return FlatState(state.names, state.shapes, params[0].astype(np.float32))


AGGREGATES = ("mean", "median", "trimmed_mean")


def robust_fedavg(
    states: Sequence[FlatState],
    counts: Sequence[int],
    how: str = "mean",
    trim: float = 0.2,
    max_ratio: float | None = None,
    max_update_norm: float | None = None,
    reference: np.ndarray | None = None,
) -> FlatState:
    """The clients' average by ``how``: ``mean`` (FedAvg weighted by the clipped counts,
    :func:`clip_counts`), ``median`` or ``trimmed_mean`` (coordinate-wise, cutting ``trim`` of
    the clients at each end; Flower's ``aggregate_median`` / ``aggregate_trimmed_avg``, which
    ignore the counts). With ``max_update_norm`` each client's update from ``reference`` (the
    weights the server sent last) is clipped first (:func:`clip_update`)."""
    if how not in AGGREGATES:
        raise ValueError(f"unknown aggregate {how!r}: one of {', '.join(AGGREGATES)}")
    _homogeneous(states)
    if max_update_norm is not None and reference is not None:
        states = [clip_update(s, reference, max_update_norm) for s in states]
    weights = clip_counts(counts, max_ratio)
    if how == "mean":
        return fedavg(states, weights)
    first = states[0]
    from flwr.server.strategy.aggregate import aggregate_median, aggregate_trimmed_avg

    results = [([s.flat.astype(np.float64)], int(w)) for s, w in zip(states, weights, strict=True)]
    out = aggregate_median(results) if how == "median" else aggregate_trimmed_avg(results, trim)
    return FlatState(list(first.names), [list(x) for x in first.shapes], out[0].astype(np.float32))
