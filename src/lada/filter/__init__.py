"""Model learnability-aware data filter (spec §3): EE-Net bandit, rewards, cold start, contexts."""

from lada.filter.bandit import LearnabilityFilter, select_by_score
from lada.filter.coldstart import kmeans_representatives
from lada.filter.config import FilterConfig
from lada.filter.rewards import (
    RewardTracker,
    aggregate_rewards,
    batch_exp_loss,
    batch_reward,
    loss_drop_signal,
    mixed_reward,
    sigmoid,
)

__all__ = [
    "FilterConfig",
    "LearnabilityFilter",
    "RewardTracker",
    "aggregate_rewards",
    "batch_exp_loss",
    "batch_reward",
    "kmeans_representatives",
    "loss_drop_signal",
    "mixed_reward",
    "select_by_score",
    "sigmoid",
]
