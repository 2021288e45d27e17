"""A teacher's knowledge boundary (ours): which public questions a model may teach.

A model writes a reasoning path worth learning only for questions like those it has learnt
from. We measure "like" in the model's own representation (the mean-pooled last hidden state,
the features the filter uses, :func:`lada.filter.features.mean_pooled_hidden`) with a
nearest-neighbour test (deep k-NN out-of-distribution detection, Sun et al., ICML 2022):

    s(q)  = max_{r in R} cos(h(q), h(r))                        similarity to the nearest reference
    τ     = quantile_ρ { max_{r' in R, r' != r} cos(h(r), h(r')) : r in R }   (leave-one-out)
    q is inside the boundary  <=>  s(q) >= τ

R is the teacher's own labelled data: a client's private training questions, the server's
labelled public questions (the LLM's general knowledge). ρ (``distill.boundary_quantile``,
default 0.05) admits a query that is at least as close to R as 95 % of R's points are to their
nearest other point. R is deduplicated by text first (a repeated question would be its own
neighbour at similarity 1 and push τ to 1).

Why (docs/method.md): the spec lets SLM k teach the LLM on every public pick and the LLM teach
SLM k likewise. On the embedded testbed an SLM's paths on questions outside its domain are 5 %
right and on its own 3-4-step questions about 0 %, and learning them took the LLM from 24 % to
2-6 % in one round whatever its step size (measured, docs/testbed.md); inside the boundary its
paths are 40-61 % right (1-step: 67-100 %). A teacher abstains outside its boundary: its path
is sent empty and learnt by nobody.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def boundary_threshold(reference: np.ndarray, quantile: float) -> float:
    """τ: the ``quantile`` of the reference points' leave-one-out nearest-neighbour cosine
    similarity (−inf with fewer than two reference points: everything is inside)."""
    r = _unit(reference)
    if r.shape[0] < 2:
        return float("-inf")
    sim = r @ r.T
    np.fill_diagonal(sim, -np.inf)
    return float(np.quantile(sim.max(axis=1), quantile))


def knowledge_boundary(reference: np.ndarray, queries: np.ndarray, quantile: float) -> np.ndarray:
    """Bool [len(queries)]: whether each query's nearest-reference cosine similarity reaches
    :func:`boundary_threshold` of ``reference`` (features [N, d] and [M, d])."""
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must lie in [0, 1], got {quantile}")
    q = np.asarray(queries)
    if q.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    if np.asarray(reference).shape[0] == 0:
        return np.zeros(q.shape[0], dtype=bool)  # knows nothing: teaches nothing
    tau = boundary_threshold(reference, quantile)
    nearest = (_unit(q) @ _unit(reference).T).max(axis=1)
    return nearest >= tau


def distinct(texts: Sequence[str], limit: int | None = None, seed: int = 0) -> list[str]:
    """The distinct ``texts`` (first occurrence order), at most ``limit`` of them drawn
    uniformly with ``seed`` (None: all)."""
    uniq = list(dict.fromkeys(texts))
    if limit is not None and len(uniq) > limit:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(uniq), size=limit, replace=False))
        uniq = [uniq[i] for i in keep]
    return uniq


def inside_boundary(
    model: object,
    tokenizer: object,
    reference_prompts: Sequence[str],
    query_prompts: Sequence[str],
    quantile: float,
    limit: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """:func:`knowledge_boundary` in ``model``'s own features: the reference prompts
    deduplicated (at most ``limit`` of them), then both sets mean-pooled."""
    from lada.filter.features import mean_pooled_hidden

    if not query_prompts:
        return np.zeros(0, dtype=bool)
    ref = distinct(reference_prompts, limit, seed)
    if not ref:
        return np.zeros(len(query_prompts), dtype=bool)
    feats = mean_pooled_hidden(model, tokenizer, [*ref, *query_prompts])
    return knowledge_boundary(feats[: len(ref)], feats[len(ref) :], quantile)


__all__ = [
    "boundary_threshold",
    "distinct",
    "inside_boundary",
    "knowledge_boundary",
]
