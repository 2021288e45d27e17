"""The model learnability-aware data filter (spec §3): one EE-Net-style neural contextual bandit.

One :class:`LearnabilityFilter` per (SLM k, LLM) pair and direction. A round is::

    idx = filt.select(X_pool, round_idx)                 # round 1 / no history: cold start
    ... learner trains on pool[idx], measures its losses before/after ...
    r = filt.compute_rewards(loss_after, loss_before)    # RewardTracker, spec §3 "Reward"
    filt.update(X_pool[idx], r)                          # history grows, f1 then f2 retrained

Scores: u = f1(x) + f2(phi(x)) (or f1(x) alone when ``use_explore`` is False, the "without
exploration" ablation); selected: u > threshold, then the budget cap (top-k by u), then the
min_select floor (top by u).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from lada.filter.coldstart import kmeans_representatives
from lada.filter.config import FilterConfig
from lada.filter.nets import fit_regression, init_nets
from lada.filter.rewards import ArrayLike, RewardTracker

STATE_VERSION = 1


def select_by_score(
    u: np.ndarray, threshold: float, budget: int | None = None, min_select: int = 1
) -> np.ndarray:
    """Sorted indices with u > threshold, capped at the top ``budget`` by u and raised to the
    top ``min_select`` by u when too few pass (ties broken by lower index)."""
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    order = np.argsort(-u, kind="stable")
    passed = np.flatnonzero(u > threshold)
    if budget is not None and passed.size > budget:
        chosen = order[:budget]
    elif passed.size < min(min_select, u.size):
        chosen = order[:min_select]
    else:
        chosen = passed
    return np.sort(chosen).astype(np.int64)


class LearnabilityFilter:
    """EE-Net filter over context vectors of dimension ``dim`` (spec §3).

    Attributes for logging: ``last_scores`` (u of the last ``select``'s X; NaN after a cold
    start), ``last_mode`` ("cold_start" or "bandit"), ``last_train_loss`` (per-epoch MSE of f1
    and f2 in the last ``update``), ``num_updates``.

    Design choices (ours): the networks and their Adam optimisers persist across rounds; f2's
    targets are residuals r - f1(x) recomputed with the freshly retrained f1 on the whole
    history; feature standardisation stats are fitted on the first X seen (normally the public
    pool) and then kept fixed; the cold start uses k-means seed ``seed + round_idx``.
    """

    def __init__(self, dim: int, config: FilterConfig | None = None) -> None:
        self.dim = int(dim)
        self.config = config if config is not None else FilterConfig()
        c = self.config
        self.f1, self.f2 = init_nets(self.dim, c.hidden, c.num_layers, c.explore_input, c.seed)
        self.opt1 = torch.optim.Adam(self.f1.parameters(), lr=c.lr)
        self.opt2 = torch.optim.Adam(self.f2.parameters(), lr=c.lr)
        self.generator = torch.Generator().manual_seed(c.seed)
        self.tracker = RewardTracker(alpha=c.alpha, signal=c.sample_signal)
        self.feat_mean: np.ndarray | None = None
        self.feat_std: np.ndarray | None = None
        self.hist_x = np.zeros((0, self.dim), dtype=np.float32)
        self.hist_r = np.zeros(0, dtype=np.float32)
        self.num_updates = 0
        self.last_scores: np.ndarray | None = None
        self.last_mode: str | None = None
        self.last_train_loss: dict[str, list[float]] = {}

    # ----- features -------------------------------------------------------------------------

    def fit_standardizer(self, X: np.ndarray) -> None:
        """Fit the per-feature mean/std (std < 1e-8 -> 1) once; later calls are no-ops."""
        if self.feat_mean is not None or not self.config.standardize_features:
            return
        X = self._check(X).astype(np.float64)
        std = X.std(axis=0)
        self.feat_mean = X.mean(axis=0).astype(np.float32)
        self.feat_std = np.where(std < 1e-8, 1.0, std).astype(np.float32)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardised float32 copy of X (unchanged when standardisation is off / not fitted)."""
        X = self._check(X).astype(np.float32)
        if self.feat_mean is None or self.feat_std is None:
            return X.copy()
        return (X - self.feat_mean) / self.feat_std

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"expected X of shape [N, {self.dim}], got {X.shape}")
        return X

    # ----- bandit ---------------------------------------------------------------------------

    @property
    def has_history(self) -> bool:
        return self.hist_r.size > 0

    def scores(self, X: np.ndarray) -> np.ndarray:
        """u = f1(x) + f2(phi(x)), or f1(x) when ``use_explore`` is False; float64 [N]."""
        self.fit_standardizer(X)
        x = torch.from_numpy(self.transform(X))
        with torch.no_grad():
            u = self.f1(x)
            if self.config.use_explore:
                u = u + self.f2(self.f1.explore_features(x, self.config.explore_input))
        return u.double().numpy()

    def select(self, X: np.ndarray, round_idx: int) -> np.ndarray:
        """Sorted indices into X of the samples to allocate this round.

        No history yet -> cold start (k-means representatives, capped by ``budget``);
        otherwise :func:`select_by_score` on u.
        """
        c = self.config
        self.fit_standardizer(X)
        if not self.has_history:
            Xs = self.transform(X)
            self.last_scores = np.full(Xs.shape[0], np.nan)
            self.last_mode = "cold_start"
            return kmeans_representatives(
                Xs,
                c.cold_start_clusters,
                c.cold_start_fraction,
                c.seed + int(round_idx),
                max_select=c.budget,
                n_init=c.cold_start_n_init,
            )
        u = self.scores(X)
        self.last_scores = u
        self.last_mode = "bandit"
        return select_by_score(u, c.threshold, c.budget, c.min_select)

    def compute_rewards(
        self,
        loss_after: ArrayLike,
        loss_before: ArrayLike | None = None,
        margins: ArrayLike | None = None,
    ) -> np.ndarray:
        """Per-sample rewards r_i for this step's samples; see :class:`RewardTracker`."""
        return self.tracker.step(loss_after, loss_before, margins)

    def update(self, X_sel: np.ndarray, rewards: ArrayLike) -> dict[str, list[float]]:
        """Append (x, r) to the history and retrain f1, then f2 on the residuals.

        Returns (and stores in ``last_train_loss``) the per-epoch MSE of each net.
        """
        c = self.config
        X_sel = self._check(X_sel)
        r = np.asarray(rewards, dtype=np.float32).reshape(-1)
        if r.shape[0] != X_sel.shape[0]:
            raise ValueError("X_sel and rewards must have the same number of rows")
        self.fit_standardizer(X_sel)
        self.hist_x = np.concatenate([self.hist_x, self.transform(X_sel)])
        self.hist_r = np.concatenate([self.hist_r, r])
        if c.max_history is not None and self.hist_r.size > c.max_history:
            self.hist_x = self.hist_x[-c.max_history :]
            self.hist_r = self.hist_r[-c.max_history :]
        self.num_updates += 1
        x = torch.from_numpy(self.hist_x)
        y = torch.from_numpy(self.hist_r)
        log = {
            "f1": fit_regression(self.f1, self.opt1, x, y, c.epochs, c.batch_size, self.generator)
        }
        if c.use_explore:
            with torch.no_grad():
                phi = self.f1.explore_features(x, c.explore_input)
                residual = y - self.f1(x)
            log["f2"] = fit_regression(
                self.f2, self.opt2, phi, residual, c.epochs, c.batch_size, self.generator
            )
        self.last_train_loss = log
        return log

    # ----- checkpointing --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Snapshot (deep copy) of everything that determines future behaviour: nets, Adam
        states, history, standardisation stats, shuffling RNG and the reward tracker. Holds only
        tensors and Python primitives, so ``torch.load(..., weights_only=True)`` reads it."""

        def t(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.from_numpy(np.array(a, copy=True))

        state = {
            "version": STATE_VERSION,
            "dim": self.dim,
            "config": self.config.to_dict(),
            "f1": self.f1.state_dict(),
            "f2": self.f2.state_dict(),
            "opt1": self.opt1.state_dict(),
            "opt2": self.opt2.state_dict(),
            "generator": self.generator.get_state(),
            "feat_mean": t(self.feat_mean),
            "feat_std": t(self.feat_std),
            "hist_x": t(self.hist_x),
            "hist_r": t(self.hist_r),
            "tracker": self.tracker.state_dict(),
            "num_updates": self.num_updates,
        }
        return copy.deepcopy(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot into this (compatibly configured) filter."""
        if int(state["dim"]) != self.dim:
            raise ValueError(f"state is for dim {state['dim']}, filter has dim {self.dim}")
        state = copy.deepcopy(state)

        def a(v: torch.Tensor | None) -> np.ndarray | None:
            return None if v is None else v.numpy().copy()

        self.f1.load_state_dict(state["f1"])
        self.f2.load_state_dict(state["f2"])
        self.opt1.load_state_dict(state["opt1"])
        self.opt2.load_state_dict(state["opt2"])
        self.generator.set_state(state["generator"])
        self.feat_mean = a(state["feat_mean"])
        self.feat_std = a(state["feat_std"])
        self.hist_x = a(state["hist_x"])
        self.hist_r = a(state["hist_r"])
        self.tracker.load_state_dict(state["tracker"])
        self.num_updates = int(state["num_updates"])

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> LearnabilityFilter:
        """A new filter with the snapshot's config and state."""
        filt = cls(int(state["dim"]), FilterConfig.from_dict(state["config"]))
        filt.load_state_dict(state)
        return filt
