"""Model learnability-aware data filter (spec §3): EE-Net bandit, rewards, cold start, contexts.

Names are imported lazily (PEP 562), so that ``lada.filter.config`` loads without torch (the
CLI validates configs before any heavy import).
"""

from __future__ import annotations

from lada.utils.lazy import lazy_getattr

_EXPORTS = {
    "FilterConfig": "lada.filter.config",
    "LearnabilityFilter": "lada.filter.bandit",
    "select_by_score": "lada.filter.bandit",
    "kmeans_representatives": "lada.filter.coldstart",
    "RewardTracker": "lada.filter.rewards",
    "aggregate_rewards": "lada.filter.rewards",
    "batch_exp_loss": "lada.filter.rewards",
    "batch_reward": "lada.filter.rewards",
    "loss_drop_signal": "lada.filter.rewards",
    "mixed_reward": "lada.filter.rewards",
    "sigmoid": "lada.filter.rewards",
}


__getattr__ = lazy_getattr("lada.filter", _EXPORTS)


__all__ = sorted(_EXPORTS)
