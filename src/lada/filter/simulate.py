"""A simulated learnability bandit whose reward drifts by round, for tests and docs.

The public pool holds N samples of difficulty d_i in [0, 1]. A learner of capacity c learns
sample i by s_i = exp(-((d_i - c) / width)^2): too easy or too hard samples teach it little.
Round t, with the picks S_t:

    loss_before_i = level_t + 1.5 d_i + noise          level_t drifts (the learner changes)
    loss_after_i  = loss_before_i - gain * s_i - shift_t + noise

and the rewards come from the filter's own :class:`~lada.filter.rewards.RewardTracker` (spec
§3): sigma(r_batch_t) moves with level_t and with which difficulties were picked, shift_t moves
every g_i alike; only s_i tells samples apart. The contexts are recomputed each round as
x_{i,t} = scale_t * (features of d_i and noise) + offset_t, like contexts from models that keep
changing. ``lift`` = mean s of the picks minus P's mean s (what uniform random picks of any
size expect).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lada.filter.bandit import LearnabilityFilter


@dataclass
class DriftingBandit:
    n: int = 300
    dim: int = 8
    capacity: float = 0.6
    width: float = 0.18
    gain: float = 0.6
    seed: int = 0
    difficulty: np.ndarray = field(init=False)
    learnability: np.ndarray = field(init=False)
    _feats: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        d = rng.uniform(0.0, 1.0, self.n)
        self.difficulty = d
        self.learnability = np.exp(-(((d - self.capacity) / self.width) ** 2))
        base = np.stack([d, np.sin(3 * d), np.cos(3 * d)], axis=1)
        noise = rng.normal(size=(self.n, self.dim - base.shape[1]))
        self._feats = np.concatenate([base * 2.0, noise], axis=1).astype(np.float32)
        self._rng = np.random.default_rng(self.seed + 1)

    def contexts(self, t: int) -> np.ndarray:
        """x of every pool sample in round t: a round-dependent affine map of fixed features."""
        r = np.random.default_rng(self.seed * 1000 + t)
        scale = r.uniform(0.5, 2.0, self.dim)
        offset = r.normal(scale=5.0, size=self.dim)
        return (self._feats * scale + offset).astype(np.float32)

    def losses(self, t: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(loss_before, loss_after) of the picks ``idx`` in round t."""
        r = np.random.default_rng(self.seed * 1000 + 500 + t)
        level = 2.0 + 1.2 * np.sin(1.3 * t)
        shift = r.uniform(-0.4, 0.8)
        k = idx.size
        lb = level + 1.5 * self.difficulty[idx] + self._rng.normal(scale=0.05, size=k)
        la = lb - self.gain * self.learnability[idx] - shift
        la = la + self._rng.normal(scale=0.05, size=k)
        return lb, la

    def run(self, filt: LearnabilityFilter, rounds: int = 6) -> list[dict[str, float]]:
        """Rounds 1..rounds of select -> losses -> rewards -> update; per round the share of P
        picked, the lift, the rewards' mean and per-sample std, and the filter's score std."""
        out = []
        for t in range(1, rounds + 1):
            idx = filt.select(self.contexts(t), t)
            lb, la = self.losses(t, idx)
            r = filt.compute_rewards(la, lb)
            filt.update_picks(idx, r)
            out.append(
                {
                    "round": t,
                    "share": idx.size / self.n,
                    "lift": float(self.learnability[idx].mean() - self.learnability.mean()),
                    "mean_reward": float(r.mean()),
                    "reward_std": float(r.std()),
                    "score_std": float(filt.last_round_stats["score_std"] or 0.0),
                }
            )
        return out
