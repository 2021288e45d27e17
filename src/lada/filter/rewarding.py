"""From a learner's losses on its picks to the filter's update and the round's numbers.

Only picks the learner actually trained on get the spec's reward, and never one whose teacher
path is empty (the teacher abstained: the loss of an empty path is the EOS after the prompt,
no learning). With ``filter.mask: teachable`` (default) no untaught sample is ever picked, so
every pick is trained. With ``mask: none`` a pick that was not trained because its teacher
could not teach it (it abstained, or its path missed P's gold answer) gets
``filter.unteachable_reward`` instead (ours, default 0), a definite outcome rather than a loss
change. The filter learns each reward with what it saw when it picked the sample
(:meth:`LearnabilityFilter.update_picks`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from lada.filter.bandit import LearnabilityFilter
from lada.filter.guard import check_losses, guarded_rewards
from lada.filter.rewards import MAX_LOSS, finite_losses


class PickLosses(Protocol):
    """A learner's losses on its picks (``lada.federation.server.LearnerLosses``)."""

    ids: list[str]
    loss_before: np.ndarray
    loss_after: np.ndarray
    margin: np.ndarray
    trained: np.ndarray | None
    # optional: each pick's teacher path ("" = the teacher abstained); see unteachable_rows


def trained_rows(losses: PickLosses) -> np.ndarray:
    """Indices into ``losses.ids`` of the picks that entered the learner's loss with a teacher
    path (a pick whose recorded teacher path is empty never counts as trained)."""
    n = len(losses.ids)
    if losses.trained is None:
        mask = np.ones(n, dtype=bool)
    else:
        mask = np.asarray(losses.trained).astype(bool).reshape(-1)
    if mask.size != n:
        raise ValueError(f"trained mask has {mask.size} entries for {n} picks")
    paths = getattr(losses, "paths", None)
    if paths is not None:
        if len(paths) != n:
            raise ValueError(f"{len(paths)} teacher paths for {n} picks")
        mask = mask & np.array([bool(p) for p in paths], dtype=bool)
    return np.flatnonzero(mask)


def unteachable_rows(losses: PickLosses) -> np.ndarray:
    """Indices into ``losses.ids`` of the untrained picks of a path exchange: the teacher
    abstained (an empty path, lada.train.boundary) or its path missed P's gold answer
    (``distill.unverified=skip``). None when the teacher paths are not recorded (the host's own
    transfer without paths)."""
    paths = getattr(losses, "paths", None)
    if paths is None:
        return np.zeros(0, dtype=np.int64)
    trained = np.zeros(len(losses.ids), dtype=bool)
    trained[trained_rows(losses)] = True
    return np.flatnonzero(~trained)


def reward_picks(
    filt: LearnabilityFilter, losses: PickLosses, pool_pos: dict[str, int]
) -> dict[str, Any]:
    """Rewards (spec §3) of the trained picks, and ``filter.unteachable_reward`` (ours) for the
    picks this teacher could not teach (:func:`unteachable_rows`), learnt by ``filt``; returns
    the round's numbers for metrics.jsonl: ``mean_reward`` (None when nothing was rewarded;
    every undefined number is None, never NaN, so metrics.jsonl stays strict JSON),
    ``r_batch``, ``n`` (rewarded), ``n_untrained``, ``n_abstained`` (empty teacher paths),
    ``mean_reward_trained``/``reward_std_trained`` (the spec's reward alone) and
    :meth:`LearnabilityFilter.round_stats`."""
    rows = trained_rows(losses)
    n_untrained = len(losses.ids) - rows.size
    unteachable = unteachable_rows(losses)
    paths = getattr(losses, "paths", None)
    counts = {
        "n_untrained": int(n_untrained),
        "n_abstained": sum(1 for p in paths if not p) if paths is not None else 0,
    }
    floor = filt.config.unteachable_reward
    if floor is None:
        unteachable = unteachable[:0]
    if rows.size + unteachable.size == 0:
        stats = filt.round_stats(np.zeros(0), np.zeros(0))
        return {"mean_reward": None, "n": 0, **counts, **stats}
    r = np.zeros(0)
    if rows.size:  # the spec's reward: only over what was learnt (B_t, r_batch, g_i)
        la, lb, m = (
            np.asarray(v)[rows] for v in (losses.loss_after, losses.loss_before, losses.margin)
        )
        # a NaN/inf or huge loss is a failed measurement, counted as the worst outcome
        # (lada.filter.rewards.finite_losses); what is still out of range is refused
        la, lb = (np.clip(finite_losses(v), -MAX_LOSS, MAX_LOSS) for v in (la, lb))
        check_losses(la, lb, m)
        r = guarded_rewards(filt.tracker, lambda: filt.compute_rewards(la, lb, m))
    r_all = np.concatenate([r, np.full(unteachable.size, float(floor or 0.0))])
    picks = np.concatenate([rows, unteachable])
    idx = np.asarray([pool_pos[losses.ids[j]] for j in picks], dtype=np.int64)
    filt.update_picks(idx, r_all)
    return {
        "mean_reward": float(np.mean(r_all)),
        "r_batch": float(filt.tracker.last_r_batch or 0.0) if rows.size else None,
        "n": int(picks.size),
        # the spec's reward over the trained picks alone (without the abstentions' floor)
        "mean_reward_trained": float(np.mean(r)) if r.size else None,
        "reward_std_trained": float(np.std(r)) if r.size else None,
        **counts,
        **filt.last_round_stats,
    }
