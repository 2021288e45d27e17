"""Configuration of the learnability-aware data filter (spec §3).

Provenance of each default is given in the field comment: **paper/review** values come from the
spec; everything marked **ours** is an [inferred]/[default] choice of this project, not the
paper's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

ExploreInput = Literal["hidden", "gradient"]
SampleSignal = Literal["loss_drop", "margin"]


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
    threshold: float = 0.5
    """Select a sample when u = f1 + f2 > threshold (review: 0.5, neutral under the sigmoid)."""
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
    explore_input: ExploreInput = "hidden"
    """phi for f2: f1's last hidden layer (ours: spec [default]) or "gradient" of f1's output
    w.r.t. its last layer's parameters (original EE-Net)."""
    use_explore: bool = True
    """False is the "without exploration" ablation: score u = f1(x) only (paper ablation)."""
    alpha: float = 0.5
    """Weight of sigma(r_batch) against sigma(g_i) in r_i (spec [default] 0.5)."""
    sample_signal: SampleSignal = "loss_drop"
    """g_i: relative drop of exp(loss) ("loss_drop", ours: spec [default]) or the contrastive
    margin of §4 ("margin")."""
    standardize_features: bool = True
    """Standardise x with mean/std fitted on the first X seen, then fixed (ours)."""
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
        if self.sample_signal not in ("loss_drop", "margin"):
            raise ValueError(f"unknown sample_signal {self.sample_signal!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must lie in [0, 1]")
        if self.max_history is not None and self.max_history < 1:
            raise ValueError("max_history must be None or >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FilterConfig:
        """Build from a dict, ignoring unknown keys (forward compatibility of checkpoints)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
