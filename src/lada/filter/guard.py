"""What may enter a filter: finite, bounded numbers only (ours; docs/threat-model.md).

The filter's state (its nets, history, standardisation stats and reward tracker) must never
hold a non-finite value: a NaN there would poison every later selection and ``filters.pt``.
Replies are checked on the wire (:mod:`lada.federation.validation`); these checks sit where
numbers enter the filter, whatever their source, and refuse a whole batch with
:class:`FilterInputError` before anything in the filter changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

# |x| of a context value: standardisation and k-means square and sum them (float32 holds 3.4e38)
MAX_CONTEXT = 1e9
# |l| of a loss: the reward takes exp(l), a mean of many of them must stay finite (float64)
MAX_LOSS = 600.0


class FilterInputError(ValueError):
    """Numbers that would make a filter's state non-finite; nothing in the filter changed."""


def _check(what: str, values: ArrayLike, bound: float) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if not np.isfinite(a).all():
        raise FilterInputError(f"{what}: non-finite values")
    big = float(np.abs(a).max()) if a.size else 0.0
    if big > bound:
        raise FilterInputError(f"{what}: |value| {big:.3g} exceeds {bound:g}")
    return a


def check_contexts(x: np.ndarray) -> np.ndarray:
    """``x`` unchanged (contexts about to be standardised or clustered), refused when not finite
    or beyond ±:data:`MAX_CONTEXT`."""
    _check("contexts", x, MAX_CONTEXT)
    return x


def check_losses(loss_after: ArrayLike, loss_before: ArrayLike, margin: ArrayLike) -> None:
    """A learner's losses before a reward is computed from them: finite, |loss| at most
    :data:`MAX_LOSS` (so exp(loss) and its means stay finite), margins finite."""
    _check("loss_after", loss_after, MAX_LOSS)
    _check("loss_before", loss_before, MAX_LOSS)
    _check("margin", margin, float(np.finfo(np.float32).max))


def guarded_rewards(tracker: Any, compute: Any) -> np.ndarray:
    """``compute()``'s rewards, refused (and ``tracker``, the filter's reward tracker, restored
    to its state before) when any is not finite."""
    saved = tracker.state_dict()
    r = np.asarray(compute(), dtype=np.float64)
    if not np.isfinite(r).all():
        tracker.load_state_dict(saved)
        raise FilterInputError("rewards: non-finite values (the reward tracker is unchanged)")
    return r
