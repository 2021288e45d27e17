"""Configuration of the learnability-aware data filter (spec §3).

Provenance of each default is given in the field comment: **paper/review** values come from the
spec; everything marked **ours** is an [inferred]/[default] choice of this project, not the
paper's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from lada.utils.rules import Rule, finite, ge, gt, within

ExploreInput = Literal["hidden", "gradient"]
SampleSignal = Literal["loss_drop", "margin"]
ContextNorm = Literal["round", "first", "none"]
ContextSource = Literal["live", "frozen"]
RewardTarget = Literal["raw", "round_z"]
Mask = Literal["teachable", "none"]
SelectRule = Literal["round_z", "absolute"]
Residual = Literal["decision", "refit"]


@dataclass
class FilterConfig:
    """Hyper-parameters of one EE-Net-style filter F_k^S or F_k^L (spec §3).

    Defaults follow the spec. Fields marked *ours* are this project's [inferred]/[default]
    choices, not values stated by the paper.
    """

    hidden: int = 256
    """Hidden width of f1 and f2 (ours: spec [default] 256)."""
    num_layers: int = 4
    """Linear layers per MLP, output layer included (ours: spec [default] 4-layer MLP)."""
    epochs: int = 10
    """Passes over the whole (x, r) history per update, for f1 and for f2 (review: 10)."""
    lr: float = 1e-3
    """Adam learning rate of f1 and f2 (ours: spec [default] 1e-3)."""
    batch_size: int = 64
    """Mini-batch size of the regression updates (ours)."""
    select_rule: SelectRule = "absolute"
    """How u selects: "absolute" = u > ``threshold`` (the spec's rule, default); "round_z"
    (ours, an option): z = (u - mean_P u) / std_P u over this round's candidates, selected when
    z > ``z_threshold``."""
    z_threshold: float = 0.0
    """select_rule "round_z": threshold on the within-round standardised score (ours)."""
    threshold: float = 0.5
    """select_rule "absolute": u = f1 + f2 > threshold (review: 0.5, neutral under sigmoid)."""
    budget: int | None = None
    """Optional cap on selected samples per round, top by u (ours: spec [default] no cap)."""
    min_select: int = 1
    """Minimum selected samples per round, top by u when too few pass (ours: spec [default] 1)."""
    cold_start_clusters: int = 10
    """k of the round-1 k-means (ours: spec [default] k = 10)."""
    cold_start_fraction: float = 0.1
    """Fraction of the pool picked in round 1 (ours: spec [default] 10% of P)."""
    cold_start_n_init: int = 10
    """k-means restarts (sklearn ``n_init``) of the cold start (ours)."""
    explore_input: ExploreInput = "gradient"
    """phi for f2: "gradient" of f1's output w.r.t. the parameters of its last
    ``explore_grad_layers`` linear layers (EE-Net's input, all of f1 there; default: the output
    layer, hidden + 1 values, the largest part affordable at hidden 256), or "hidden": f1's last
    hidden layer (the spec's [default])."""
    explore_grad_layers: int = 1
    """Linear layers of f1, counted from the output, whose gradient forms phi (ours); 0: all."""
    explore_max_dim: int = 70_000
    """Refuse a gradient phi wider than this (f2's first layer is phi_dim x hidden; ours)."""
    residual: Residual = "decision"
    """f2's target: r - f1(x) with f1(x) stored when the sample was selected ("decision", EE-Net),
    or recomputed with f1 refit on the same history ("refit": the old, in-sample behaviour)."""
    reward_target: RewardTarget = "raw"
    """What f1 and f2 regress on: "raw" = r_i itself (the spec, default), so that alpha and
    r_batch reach what the filter learns; "round_z" (ours, an option): sigma((r - mean_t r) /
    std_t r) over the step's rewarded samples, which cancels sigma(r_batch) and alpha's share of
    it (a different method: kept for comparisons only)."""
    mask: Mask = "teachable"
    """Candidates (ours): "teachable" = a public sample its teacher will not teach leaves the
    candidate set before the filter scores, per learner and direction (the teacher abstains,
    or its path misses P's gold answer where a label exists and ``distill.unverified=skip``);
    the filter then ranks learnability among what can be taught. "none": every sample of P is a
    candidate, and untaught picks get ``unteachable_reward``."""
    use_explore: bool = True
    """False is the "without exploration" ablation: score u = f1(x) only (paper ablation)."""
    alpha: float = 0.5
    """Weight of sigma(r_batch) against sigma(g_i) in r_i (spec [default] 0.5)."""
    sample_signal: SampleSignal = "loss_drop"
    """g_i: relative drop of exp(loss) ("loss_drop", ours: spec [default]) or the contrastive
    margin of §4 ("margin")."""
    standardize_features: bool = True
    """Standardise x per feature (ours); False: raw x whatever ``context_norm`` says."""
    context_norm: ContextNorm = "round"
    """Standardisation stats of x (ours): "round" = fitted on each round's pool (contexts are
    recomputed every round from changing models, so stats fitted once let x encode the round);
    "first" = fitted once on the first X seen (the old behaviour); "none"."""
    context_source: ContextSource = "live"
    """x of the pool (ours): "live" = this round's contexts (the models' current features);
    "frozen" = the contexts of the first round the filter saw, reused every round, so x cannot
    encode the round at all (but no longer follows the learner's state)."""
    unteachable_reward: float | None = 0.0
    """``mask: none`` only (with ``teachable`` no untaught sample is ever picked): reward of a
    pick that was not trained because its teacher could not teach it: the teacher abstained
    (``distill.llm_teaches`` / ``slm_teaches``) or its path missed P's gold answer
    (``distill.unverified=skip``) (ours): 0.0, the lowest reward; None: such picks are not
    rewarded. Never a reward computed from an empty path."""
    seed: int = 0
    """Seed of network init, mini-batch shuffling and the cold-start k-means (ours)."""
    max_history: int | None = None
    """Keep only the newest this many (x, r) pairs for training; None keeps all (ours)."""

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.num_layers < 2:
            raise ValueError("hidden must be >= 1 and num_layers >= 2 (f1 needs a hidden layer)")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs must be >= 0, batch_size >= 1 and lr > 0")
        if self.budget is not None and self.budget < 1:
            raise ValueError("budget must be None or >= 1")
        if self.min_select < 0:
            raise ValueError("min_select must be >= 0")
        if self.budget is not None and self.min_select > self.budget:
            raise ValueError("min_select cannot exceed budget")
        if self.cold_start_clusters < 1 or not 0.0 <= self.cold_start_fraction <= 1.0:
            raise ValueError("cold_start_clusters >= 1 and 0 <= cold_start_fraction <= 1")
        if self.explore_input not in ("hidden", "gradient"):
            raise ValueError(f"unknown explore_input {self.explore_input!r}")
        for name, allowed in (
            ("context_norm", ("round", "first", "none")),
            ("context_source", ("live", "frozen")),
            ("reward_target", ("raw", "round_z")),
            ("mask", ("teachable", "none")),
            ("select_rule", ("round_z", "absolute")),
            ("residual", ("decision", "refit")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; one of {allowed}")
        if self.explore_grad_layers < 0 or self.explore_max_dim < 1:
            raise ValueError("explore_grad_layers must be >= 0 and explore_max_dim >= 1")
        if self.sample_signal not in ("loss_drop", "margin"):
            raise ValueError(f"unknown sample_signal {self.sample_signal!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must lie in [0, 1]")
        if self.unteachable_reward is not None and not 0.0 <= self.unteachable_reward <= 1.0:
            raise ValueError("unteachable_reward must be None or lie in [0, 1]")
        if self.max_history is not None and self.max_history < 1:
            raise ValueError("max_history must be None or >= 1")

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        """Field rules of the config check (lada.config.validate), by key."""
        return {
            "hidden": ge(1),
            "num_layers": ge(2, why=" (f1 needs a hidden layer)"),
            "epochs": ge(0),
            "lr": gt(0),
            "batch_size": ge(1),
            "threshold": finite,
            "budget": ge(1, none_ok=True, why=" (null: no cap)"),
            "min_select": ge(0),
            "cold_start_clusters": ge(1),
            "cold_start_fraction": within(0, 1),
            "cold_start_n_init": ge(1),
            "alpha": within(0, 1),
            "seed": ge(0),
            "max_history": ge(1, none_ok=True),
            "unteachable_reward": within(0, 1, none_ok=True),
        }

    @classmethod
    def relations(cls, values: dict[str, Any]) -> list[tuple[str, str]]:
        """Rules across fields: (field, what is wrong)."""
        budget, least = values.get("budget"), values.get("min_select", 1)
        if budget is not None and least > budget:
            return [("min_select", f"cannot exceed budget ({budget})")]
        return []

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FilterConfig:
        """Build from a dict, ignoring unknown keys (forward compatibility of checkpoints)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


LEGACY_RULE: dict[str, Any] = {
    "select_rule": "absolute",
    "reward_target": "raw",
    "residual": "refit",
    "context_norm": "first",
    "explore_input": "hidden",
    "mask": "none",
}
"""The first filter (u > 0.5 on raw rewards, in-sample residual, stats fitted once,
hidden-layer phi, every sample of P a candidate): ``FilterConfig(**LEGACY_RULE)`` reproduces
it, e.g. for comparisons."""

ROUND_Z_RULE: dict[str, Any] = {"select_rule": "round_z", "reward_target": "round_z"}
"""The within-round standardised target and selection (ours, an option): cancels r_batch and
alpha (see ``reward_target``); ``FilterConfig(**ROUND_Z_RULE)``."""
