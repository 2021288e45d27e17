"""Within-round normalisation of the filter's inputs, targets and scores (ours).

A round's contexts come from models that changed since the last round, and a round's rewards
share a round-wide part (sigma(r_batch) and whatever drifts: the learner's overall progress).
Neither tells samples apart within the round, yet both would let f1 predict "which round" instead
of "which sample". These functions keep only the within-round part:

    x~_i = (x_i - mean_P x) / std_P x                        standardize (stats of one pool)
    y_i  = sigma((r_i - mean_S r) / std_S r)                 round_reward_target
    z_i  = (u_i - mean_P u) / std_P u                        round_z

with P the round's public pool and S the round's rewarded picks.
"""

from __future__ import annotations

import numpy as np

from lada.filter.rewards import ArrayLike, sigmoid

EPS = 1e-8


def standardize_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (mean, std) of X as float32; a std below 1e-8 becomes 1 (constant feature)."""
    X = np.asarray(X, dtype=np.float64)
    std = X.std(axis=0)
    return X.mean(axis=0).astype(np.float32), np.where(std < EPS, 1.0, std).astype(np.float32)


def round_z(values: ArrayLike) -> np.ndarray:
    """(v - mean v) / std v over the given values; all 0 when they are (nearly) constant."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return v
    std = v.std()
    if std < EPS * max(1.0, float(np.abs(v).max())):
        return np.zeros_like(v)
    return (v - v.mean()) / std


def round_reward_target(rewards: ArrayLike) -> np.ndarray:
    """y_i = sigma(z_i) of the round's rewards: mean ~0.5, spread ~0.2 whatever the scale of r's
    within-round spread; 0.5 each for a single or constant reward (nothing to rank)."""
    return sigmoid(round_z(rewards))
