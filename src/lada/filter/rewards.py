"""Filter rewards (spec §3, "Reward"): pure functions plus a small bookkeeping class.

For learner M of a filter, with l_i its loss on sample i (we use the per-sample mean token
cross-entropy of the teacher's path, so exp(l_i) is the path's perplexity) and S_t the samples
selected at step t:

    B_t       = (1/|S_t|) sum_{i in S_t} exp(l_i)                    batch_exp_loss
    r_batch_t = (B_{t-1} - B_t) / max(B_{t-1}, B_t)                  batch_reward
    g_i       = (exp(lb_i) - exp(la_i)) / max(exp(lb_i), exp(la_i))  loss_drop_signal (ours)
    r_i       = alpha*sigmoid(r_batch_t) + (1 - alpha)*sigmoid(g_i)  mixed_reward

A *step* t is either a round or a training batch: :class:`RewardTracker` chains B across the
calls it receives, whichever granularity the caller uses (see its docstring).

Every loss enters through :func:`finite_losses` (ours): NaN and +inf become ``MAX_LOSS`` (the
worst outcome), and B_t caps losses there, so exp(l) never overflows (exp(710) would) and no
non-finite reward can reach a filter's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lada.filter.config import SampleSignal

ArrayLike = np.ndarray | Sequence[float]

MAX_LOSS = 100.0
"""Cap on a per-sample mean token NLL (ours): exp(100) ~ 2.7e43 keeps every B_t finite; a real
model's mean NLL is below log(vocabulary size), about 12 for 150k tokens."""


def finite_losses(losses: ArrayLike) -> np.ndarray:
    """``losses`` as float64 with NaN and +inf set to ``MAX_LOSS`` and -inf to ``-MAX_LOSS``
    (a NaN loss is a failed measurement: counted as the worst outcome, never as a reward of
    NaN). :func:`batch_exp_loss` also caps them at ``MAX_LOSS`` before exp."""
    x = np.asarray(losses, dtype=np.float64)
    return np.nan_to_num(x, nan=MAX_LOSS, posinf=MAX_LOSS, neginf=-MAX_LOSS)


def sigmoid(x: ArrayLike | float) -> np.ndarray:
    """Numerically stable logistic function sigma(x) = 1 / (1 + exp(-x)), elementwise."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def batch_exp_loss(losses: ArrayLike) -> float:
    """B_t = mean_i exp(l_i) over the samples of step t (spec §3). Needs >= 1 loss."""
    losses = np.minimum(finite_losses(losses).reshape(-1), MAX_LOSS)
    if losses.size == 0:
        raise ValueError("batch_exp_loss needs at least one loss")
    return float(np.mean(np.exp(losses)))


def batch_reward(b_prev: float, b_cur: float) -> float:
    """r_batch_t = (B_{t-1} - B_t) / max(B_{t-1}, B_t), in (-1, 1); > 0 when M improved."""
    denom = max(b_prev, b_cur)
    if not np.isfinite(denom) or denom <= 0.0:  # a B from before finite_losses (old state)
        return 0.0
    return float((b_prev - b_cur) / denom)


def loss_drop_signal(loss_before: ArrayLike, loss_after: ArrayLike) -> np.ndarray:
    """g_i = (exp(lb_i) - exp(la_i)) / max(exp(lb_i), exp(la_i)), in (-1, 1).

    Ours: the spec says only "relative drop of exp(l_i) from before to after training on i"; we
    normalise by the max as for ``batch_reward``. Computed as sign(d)*(1 - exp(-|d|)) with
    d = lb - la, which is the same value without overflowing exp for large losses.
    """
    lb = finite_losses(loss_before)
    la = finite_losses(loss_after)
    if lb.shape != la.shape:
        raise ValueError(f"shape mismatch: {lb.shape} vs {la.shape}")
    d = lb - la
    return np.sign(d) * -np.expm1(-np.abs(d))


def mixed_reward(r_batch: float, g: ArrayLike, alpha: float = 0.5) -> np.ndarray:
    """r_i = alpha*sigma(r_batch) + (1 - alpha)*sigma(g_i), in (0, 1); 0.5 is neutral."""
    g = np.asarray(g, dtype=np.float64)
    return alpha * sigmoid(r_batch) + (1.0 - alpha) * sigmoid(g)


def aggregate_rewards(ids: ArrayLike, rewards: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean reward per sample id (ours), for per-batch rewards when a sample was seen in several
    batches (several local epochs). Returns (sorted unique ids, mean reward of each)."""
    ids = np.asarray(ids).reshape(-1)
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if ids.shape != rewards.shape:
        raise ValueError("ids and rewards must have the same length")
    uniq, inv = np.unique(ids, return_inverse=True)
    sums = np.bincount(inv, weights=rewards, minlength=uniq.size)
    counts = np.bincount(inv, minlength=uniq.size)
    return uniq, sums / counts


class RewardTracker:
    """Keeps B_{t-1} for one filter and turns a step's losses into per-sample rewards r_i.

    Call :meth:`step` once per step, for the samples of that step only:

    * per round: once after local training, with each selected sample's loss before training
      (measured at the start of the round) and after training;
    * per training batch: once per optimiser step, with the batch's losses just before and just
      after that step; average a sample's rewards over epochs with :func:`aggregate_rewards`.

    The chain of B is continuous across calls (the B of a round's last step is the B_{t-1} of
    the next round's first step), so use one tracker per filter and per granularity.

    First step (no B_{t-1} yet), ours: B_{t-1} is the mean exp(loss_before) of the same samples,
    so r_batch measures the step's own improvement; if ``loss_before`` is not given either,
    r_batch = 0 (neutral, sigma = 0.5).

    ``signal="margin"`` uses g_i = the contrastive margin of spec §4 after training (see
    ``lada.train.losses.contrastive_margin``; relative to the start-of-round reference model it
    already measures the change) instead of the loss drop.
    """

    def __init__(self, alpha: float = 0.5, signal: SampleSignal = "loss_drop") -> None:
        self.alpha = alpha
        self.signal = signal
        self.b_prev: float | None = None
        self.last_r_batch: float | None = None

    def step(
        self,
        loss_after: ArrayLike,
        loss_before: ArrayLike | None = None,
        margins: ArrayLike | None = None,
    ) -> np.ndarray:
        """Rewards r_i of this step's samples (same order as ``loss_after``); advances B."""
        la = finite_losses(loss_after).reshape(-1)
        lb = None if loss_before is None else finite_losses(loss_before).reshape(-1)
        b_cur = batch_exp_loss(la)
        if self.b_prev is not None:
            r_batch = batch_reward(self.b_prev, b_cur)
        elif lb is not None:
            r_batch = batch_reward(batch_exp_loss(lb), b_cur)
        else:
            r_batch = 0.0
        if self.signal == "loss_drop":
            if lb is None:
                raise ValueError('sample_signal "loss_drop" needs loss_before')
            g = loss_drop_signal(lb, la)
        else:
            if margins is None:
                raise ValueError('sample_signal "margin" needs margins')
            g = np.asarray(margins, dtype=np.float64).reshape(-1)
            g = np.nan_to_num(g, nan=0.0, posinf=MAX_LOSS, neginf=-MAX_LOSS)  # NaN: neutral
            if g.shape != la.shape:
                raise ValueError("margins and loss_after must have the same length")
        self.b_prev = b_cur
        self.last_r_batch = r_batch
        return mixed_reward(r_batch, g, self.alpha)

    def state_dict(self) -> dict[str, Any]:
        return {"b_prev": self.b_prev, "last_r_batch": self.last_r_batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.b_prev = state["b_prev"]
        self.last_r_batch = state.get("last_r_batch")
