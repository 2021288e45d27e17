"""From a learner's losses on its picks to the filter's update and the round's numbers.

Only picks the learner actually trained on are rewarded (``distill.unverified=skip`` leaves
picks with an unverified path out of the loss; their loss change measures drift, not learning).
The filter learns each reward with what it saw when it picked the sample
(:meth:`LearnabilityFilter.update_picks`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from lada.filter.bandit import LearnabilityFilter


class PickLosses(Protocol):
    """A learner's losses on its picks (``lada.federation.server.LearnerLosses``)."""

    ids: list[str]
    loss_before: np.ndarray
    loss_after: np.ndarray
    margin: np.ndarray
    trained: np.ndarray | None


def trained_rows(losses: PickLosses) -> np.ndarray:
    """Indices into ``losses.ids`` of the picks that entered the learner's loss."""
    n = len(losses.ids)
    if losses.trained is None:
        return np.arange(n)
    mask = np.asarray(losses.trained).astype(bool).reshape(-1)
    if mask.size != n:
        raise ValueError(f"trained mask has {mask.size} entries for {n} picks")
    return np.flatnonzero(mask)


def reward_picks(
    filt: LearnabilityFilter, losses: PickLosses, pool_pos: dict[str, int]
) -> dict[str, Any]:
    """Rewards (spec §3) of the trained picks, learnt by ``filt``; returns the round's numbers
    for metrics.jsonl: ``mean_reward`` (NaN when nothing was rewarded), ``r_batch``, ``n``
    (rewarded), ``n_untrained`` and :meth:`LearnabilityFilter.round_stats`."""
    rows = trained_rows(losses)
    n_untrained = len(losses.ids) - rows.size
    if rows.size == 0:
        stats = filt.round_stats(np.zeros(0), np.zeros(0))
        return {"mean_reward": float("nan"), "n": 0, "n_untrained": n_untrained, **stats}
    r = filt.compute_rewards(
        np.asarray(losses.loss_after)[rows],
        np.asarray(losses.loss_before)[rows],
        np.asarray(losses.margin)[rows],
    )
    idx = np.asarray([pool_pos[losses.ids[j]] for j in rows], dtype=np.int64)
    filt.update_picks(idx, r)
    return {
        "mean_reward": float(np.mean(r)),
        "r_batch": float(filt.tracker.last_r_batch or 0.0),
        "n": int(rows.size),
        "n_untrained": int(n_untrained),
        **filt.last_round_stats,
    }
