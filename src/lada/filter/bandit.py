"""The model learnability-aware data filter (spec §3): one EE-Net-style neural contextual bandit.

One :class:`LearnabilityFilter` per (SLM k, LLM) pair and direction. A round is::

    idx = filt.select(X_pool, round_idx, candidates)   # round 1 / no history: cold start
    ... learner trains on pool[idx] ...
    r = filt.compute_rewards(loss_after, loss_before)   # RewardTracker, spec §3 "Reward"
    filt.update_picks(idx, r)                   # decision-time records -> history; refit f1, f2

``candidates`` (ours, ``filter.mask``): the pool samples their teacher will teach; the others
leave the pool before the filter scores (a round with none selects nothing and learns nothing).
Scores: u = f1(x) + f2(phi(x)) (f1(x) alone when ``use_explore`` is False, the "without
exploration" ablation). ``select`` stores, for every pool sample, the standardised x, f1(x) and
phi(x) as they were when the decision was made; ``update_picks`` appends the picks' records to
the history, so f2 learns y - f1(x) with f1(x) of decision time (EE-Net), not of the refit f1.
f1 learns r_i itself (``reward_target: raw``, the spec). Selected among the candidates:
u > threshold (0.5, the spec; or z(u) > z_threshold with ``select_rule: round_z``), then the
budget cap (top-k by u), then the min_select floor (top by u).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lada.filter.coldstart import kmeans_representatives
from lada.filter.config import FilterConfig
from lada.filter.nets import fit_regression, init_nets
from lada.filter.rewards import ArrayLike, RewardTracker
from lada.filter.targets import round_reward_target, round_z, standardize_stats

STATE_VERSION = 2


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


@dataclass
class Decision:
    """What the filter saw when it decided on a pool: standardised x, f1(x) and phi(x)."""

    x: np.ndarray
    f1: np.ndarray
    phi: np.ndarray


def _std_or_none(v: np.ndarray) -> float | None:
    v = np.asarray(v, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.std()) if v.size else None


class LearnabilityFilter:
    """EE-Net filter over context vectors of dimension ``dim`` (spec §3).

    Attributes for logging: ``last_scores`` (u of the last ``select``'s X; NaN after a cold
    start), ``last_mode`` ("cold_start" or "bandit"), ``last_selected``, ``last_train_loss``
    (per-epoch MSE of f1 and f2 in the last update), ``last_round_stats`` (see
    :meth:`round_stats`), ``num_updates``.

    Design choices (ours): the networks and their Adam optimisers persist across rounds; x is
    standardised with stats of each round's pool (``context_norm``); unteachable samples leave
    the candidates (``mask``); the cold start uses k-means seed ``seed + round_idx`` on the
    candidates. The first filter stays reachable (``lada.filter.config.LEGACY_RULE``).
    """

    def __init__(self, dim: int, config: FilterConfig | None = None) -> None:
        self.dim = int(dim)
        self.config = config if config is not None else FilterConfig()
        c = self.config
        self.f1, self.f2 = init_nets(
            self.dim,
            c.hidden,
            c.num_layers,
            c.explore_input,
            c.seed,
            c.explore_grad_layers,
            c.explore_max_dim,
        )
        self.opt1 = torch.optim.Adam(self.f1.parameters(), lr=c.lr)
        self.opt2 = torch.optim.Adam(self.f2.parameters(), lr=c.lr)
        self.generator = torch.Generator().manual_seed(c.seed)
        self.tracker = RewardTracker(alpha=c.alpha, signal=c.sample_signal)
        self.feat_mean: np.ndarray | None = None
        self.feat_std: np.ndarray | None = None
        self.frozen_x: np.ndarray | None = None  # context_source "frozen": the first pool's x
        phi_dim = int(self.f2.body[0].in_features)
        self.hist_x = np.zeros((0, self.dim), dtype=np.float32)
        self.hist_r = np.zeros(0, dtype=np.float32)  # raw rewards r_i
        self.hist_y = np.zeros(0, dtype=np.float32)  # what f1 learns (reward_target)
        self.hist_f1 = np.zeros(0, dtype=np.float32)  # f1(x) at decision time
        self.hist_phi = np.zeros((0, phi_dim), dtype=np.float32)  # phi(x) at decision time
        self.prev_mean_reward: float | None = None
        self.num_updates = 0
        self.pending: Decision | None = None
        self.last_scores: np.ndarray | None = None
        self.last_selected: np.ndarray | None = None
        self.last_mode: str | None = None
        self.last_masked = 0  # pool samples outside the last select's candidates
        self.last_train_loss: dict[str, list[float]] = {}
        self.last_round_stats: dict[str, float | int | None] = {}

    # ----- features -------------------------------------------------------------------------

    def fit_standardizer(self, X: np.ndarray, refit: bool = False) -> None:
        """Fit the per-feature mean/std of x. ``context_norm="round"``: refit when ``refit``
        (each round's pool) or when nothing is fitted yet; "first": fitted once; "none": never."""
        c = self.config
        if not c.standardize_features or c.context_norm == "none":
            return
        if self.feat_mean is not None and not (refit and c.context_norm == "round"):
            return
        self.feat_mean, self.feat_std = standardize_stats(self._check(X))

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

    def pool_contexts(self, X: np.ndarray) -> np.ndarray:
        """The pool's x for this round: X itself, or (``context_source="frozen"``) the first
        pool's X, kept from then on; the pool must keep its size and order."""
        X = self._check(X)
        if self.config.context_source == "live":
            return X
        if self.frozen_x is None:
            self.frozen_x = np.array(X, dtype=np.float32, copy=True)
        elif self.frozen_x.shape[0] != X.shape[0]:
            raise ValueError(
                f"filter.context_source=frozen keeps the first pool's {self.frozen_x.shape[0]} "
                f"contexts, but this pool has {X.shape[0]} samples"
            )
        return self.frozen_x

    def _phi(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        return self.f1.explore_features(x, c.explore_input, c.explore_grad_layers)

    def decide(self, xs: np.ndarray) -> Decision:
        """f1(x) and phi(x) of already standardised contexts, with the current f1."""
        x = torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32))
        with torch.no_grad():
            f1 = self.f1(x).numpy().astype(np.float32)
        return Decision(x=xs.astype(np.float32), f1=f1, phi=self._phi(x).numpy())

    # ----- bandit ---------------------------------------------------------------------------

    @property
    def has_history(self) -> bool:
        return self.hist_r.size > 0

    def _u(self, d: Decision) -> np.ndarray:
        u = d.f1.astype(np.float64)
        if self.config.use_explore:
            with torch.no_grad():
                u = u + self.f2(torch.from_numpy(d.phi)).double().numpy()
        return u

    def scores(self, X: np.ndarray) -> np.ndarray:
        """u = f1(x) + f2(phi(x)), or f1(x) when ``use_explore`` is False; float64 [N].
        X is a pool: with ``context_norm="round"`` it is standardised with its own stats."""
        self.fit_standardizer(X, refit=True)
        return self._u(self.decide(self.transform(X)))

    def select(
        self, X: np.ndarray, round_idx: int, candidates: np.ndarray | None = None
    ) -> np.ndarray:
        """Sorted indices into the pool X of the samples to allocate this round.

        ``candidates`` (bool [N]; None: all): the samples their teacher will teach; the rest
        leave the pool before the filter scores (``last_masked`` counts them). No candidate:
        nothing is selected (``last_mode`` "masked"). No history yet -> cold start (k-means
        representatives of the candidates, capped by ``budget``); otherwise
        :func:`select_by_score` on the candidates' u (or z(u), ``select_rule="round_z"``).
        Records the decision (x, f1(x), phi(x) of every pool sample) for :meth:`update_picks`.
        """
        c = self.config
        X = self.pool_contexts(X)
        n = X.shape[0]
        cand = np.ones(n, dtype=bool) if candidates is None else np.asarray(candidates, bool)
        if cand.shape != (n,):
            raise ValueError(f"candidates must be a bool mask of {n} entries, got {cand.shape}")
        pos = np.flatnonzero(cand)
        self.last_masked = int(n - pos.size)
        self.fit_standardizer(X, refit=True)
        d = self.decide(self.transform(X))
        self.pending = d
        if pos.size == 0:
            self.last_scores = np.full(n, np.nan)
            self.last_mode = "masked"
            idx = np.zeros(0, dtype=np.int64)
        elif not self.has_history:
            self.last_scores = np.full(n, np.nan)
            self.last_mode = "cold_start"
            idx = pos[
                kmeans_representatives(
                    d.x[pos],
                    c.cold_start_clusters,
                    c.cold_start_fraction,
                    c.seed + int(round_idx),
                    max_select=c.budget,
                    n_init=c.cold_start_n_init,
                )
            ]
        else:
            u = self._u(d)
            self.last_scores = np.where(cand, u, np.nan)
            self.last_mode = "bandit"
            if c.select_rule == "round_z":
                # ties and order are those of u: z is an increasing map of u
                chosen = select_by_score(round_z(u[pos]), c.z_threshold, c.budget, c.min_select)
            else:
                chosen = select_by_score(u[pos], c.threshold, c.budget, c.min_select)
            idx = pos[chosen]
        idx = np.sort(idx).astype(np.int64)
        self.last_selected = idx
        return idx

    def compute_rewards(
        self,
        loss_after: ArrayLike,
        loss_before: ArrayLike | None = None,
        margins: ArrayLike | None = None,
    ) -> np.ndarray:
        """Per-sample rewards r_i for this step's samples; see :class:`RewardTracker`."""
        return self.tracker.step(loss_after, loss_before, margins)

    def update_picks(self, pool_idx: ArrayLike, rewards: ArrayLike) -> dict[str, list[float]]:
        """Learn from rewards of pool samples ``pool_idx`` of the last :meth:`select`, using what
        the filter saw at that decision (x, f1(x), phi(x)). Pass only the picks the learner
        actually trained on."""
        if self.pending is None:
            raise RuntimeError("update_picks needs a select() first (it learns from its records)")
        idx = np.asarray(pool_idx, dtype=np.int64).reshape(-1)
        d = self.pending
        return self._learn(Decision(d.x[idx], d.f1[idx], d.phi[idx]), rewards)

    def update(self, X_sel: np.ndarray, rewards: ArrayLike) -> dict[str, list[float]]:
        """Learn from rewards of samples with raw contexts ``X_sel`` decided on now (f1(x) and
        phi(x) of the current f1, standardised with the current stats). Within a round this
        equals :meth:`update_picks` (nothing changed since the decision)."""
        X_sel = self._check(X_sel)
        self.fit_standardizer(X_sel)
        return self._learn(self.decide(self.transform(X_sel)), rewards)

    def _learn(self, d: Decision, rewards: ArrayLike) -> dict[str, list[float]]:
        """Append the records and targets to the history and retrain f1, then f2.

        Returns (and stores in ``last_train_loss``) the per-epoch MSE of each net.
        """
        c = self.config
        r = np.asarray(rewards, dtype=np.float32).reshape(-1)
        if r.shape[0] != d.x.shape[0]:
            raise ValueError("the picks and their rewards must have the same number of rows")
        if not np.all(np.isfinite(r)):
            raise ValueError(f"rewards must be finite, got {r[~np.isfinite(r)][:5].tolist()}")
        y = round_reward_target(r) if c.reward_target == "round_z" else r
        y = np.asarray(y, dtype=np.float32)
        self.last_round_stats = self.round_stats(r, y)
        if r.size:
            self.prev_mean_reward = float(np.mean(r))
        self.hist_x = np.concatenate([self.hist_x, d.x.astype(np.float32)])
        self.hist_r = np.concatenate([self.hist_r, r])
        self.hist_y = np.concatenate([self.hist_y, y])
        self.hist_f1 = np.concatenate([self.hist_f1, d.f1.astype(np.float32)])
        self.hist_phi = np.concatenate([self.hist_phi, d.phi.astype(np.float32)])
        if c.max_history is not None and self.hist_r.size > c.max_history:
            keep = slice(-c.max_history, None)
            self.hist_x, self.hist_r, self.hist_y = (
                self.hist_x[keep],
                self.hist_r[keep],
                self.hist_y[keep],
            )
            self.hist_f1, self.hist_phi = self.hist_f1[keep], self.hist_phi[keep]
        self.num_updates += 1
        x = torch.from_numpy(self.hist_x)
        y_t = torch.from_numpy(self.hist_y)
        log = {
            "f1": fit_regression(self.f1, self.opt1, x, y_t, c.epochs, c.batch_size, self.generator)
        }
        if c.use_explore:
            phi, residual = self.explore_targets()
            log["f2"] = fit_regression(
                self.f2, self.opt2, phi, residual, c.epochs, c.batch_size, self.generator
            )
        self.last_train_loss = log
        return log

    def explore_targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """f2's training set (phi, y - f1(x)) over the history: decision-time phi and f1(x)
        (``residual="decision"``, EE-Net) or those of the current f1 ("refit", in-sample)."""
        y = torch.from_numpy(self.hist_y)
        if self.config.residual == "decision":
            return torch.from_numpy(self.hist_phi), y - torch.from_numpy(self.hist_f1)
        x = torch.from_numpy(self.hist_x)
        with torch.no_grad():
            return self._phi(x), y - self.f1(x)

    def round_stats(self, r: np.ndarray, y: np.ndarray) -> dict[str, float | int | None]:
        """This round's numbers for metrics.jsonl: the last selection's within-round score std
        over the pool (``score_std``; None after a cold start) and count, the rewards' round mean,
        per-sample std and drift (mean minus last round's mean), and the learnt target's std."""
        scores = self.last_scores
        mean = float(np.mean(r)) if r.size else None
        return {
            "n_selected": None if self.last_selected is None else int(self.last_selected.size),
            "masked": int(self.last_masked),
            "score_std": None if scores is None else _std_or_none(scores),
            "n_rewarded": int(r.size),
            "mean_reward": mean,
            "reward_std": float(np.std(r)) if r.size else None,
            "reward_drift": None
            if mean is None or self.prev_mean_reward is None
            else mean - self.prev_mean_reward,
            "target_std": float(np.std(y)) if y.size else None,
        }

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
            "hist_y": t(self.hist_y),
            "hist_f1": t(self.hist_f1),
            "hist_phi": t(self.hist_phi),
            "prev_mean_reward": self.prev_mean_reward,
            "frozen_x": t(self.frozen_x),
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
        if int(state.get("version", 1)) >= 2:
            self.hist_y = a(state["hist_y"])
            self.hist_f1 = a(state["hist_f1"])
            self.hist_phi = a(state["hist_phi"])
            self.prev_mean_reward = state["prev_mean_reward"]
            self.frozen_x = a(state.get("frozen_x"))
        else:  # version 1 kept no decision-time records: the loaded f1's stand in for them
            self.hist_y = self.hist_r.copy()
            d = self.decide(self.hist_x)
            self.hist_f1, self.hist_phi = d.f1, d.phi
            self.prev_mean_reward = None
        self.tracker.load_state_dict(state["tracker"])
        self.num_updates = int(state["num_updates"])

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> LearnabilityFilter:
        """A new filter with the snapshot's config and state."""
        filt = cls(int(state["dim"]), FilterConfig.from_dict(state["config"]))
        filt.load_state_dict(state)
        return filt
