"""Round-1 cold start (spec §3): k-means on the contexts, representatives of every cluster."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning


def cold_start_count(n: int, n_clusters: int, fraction: float, max_select: int | None) -> int:
    """round(fraction * n) clipped to [min(n_clusters, n), n], then to ``max_select`` if given.

    Rounding is half-up (not Python's banker's rounding).
    """
    m = int(np.floor(fraction * n + 0.5))
    m = max(m, min(n_clusters, n))
    m = min(m, n)
    if max_select is not None:
        m = min(m, max_select)
    return m


def kmeans_representatives(
    X: np.ndarray,
    n_clusters: int = 10,
    fraction: float = 0.1,
    seed: int = 0,
    *,
    max_select: int | None = None,
    n_init: int = 10,
) -> np.ndarray:
    """Indices of ``cold_start_count(...)`` representatives of a k-means clustering of X.

    Pass standardised X (the filter does). Picks are spread evenly over clusters round-robin:
    pass r takes each cluster's r-th sample nearest its centroid, clusters visited by size
    (largest first, ties by cluster id), exhausted clusters skipped; so cluster counts differ by
    at most one unless a cluster runs out, and the nearest-to-centroid samples come first.
    ``n_clusters`` is clipped to N. Returns sorted indices.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError("X must be 2-D [N, d]")
    n = X.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = min(n_clusters, n)
    m = cold_start_count(n, n_clusters, fraction, max_select)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(X)
    labels = km.labels_
    dist = np.linalg.norm(X - km.cluster_centers_[labels], axis=1)
    members: list[np.ndarray] = []
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        members.append(idx[np.argsort(dist[idx], kind="stable")])
    order = sorted(range(k), key=lambda c: (-members[c].size, c))
    chosen: list[int] = []
    rank = 0
    while len(chosen) < m:
        for c in order:
            if rank < members[c].size and len(chosen) < m:
                chosen.append(int(members[c][rank]))
        rank += 1
    return np.sort(np.asarray(chosen, dtype=np.int64))
