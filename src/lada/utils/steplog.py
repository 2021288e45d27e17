"""Per-step training losses for an optional logger (``report.to``; :mod:`lada.runner.tensorboard`).

Roles call :func:`log_steps` after each training step of theirs (local training, distillation);
a logger running in the same process installs a sink with :func:`set_sink`. Without one (the
default, and in processes without a logger, e.g. Flower's) it does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_sink: Callable[[str, list[float]], None] | None = None


def set_sink(sink: Callable[[str, list[float]], None] | None) -> None:
    """Send every :func:`log_steps` to ``sink(tag, losses)`` (None: stop)."""
    global _sink
    _sink = sink


def log_steps(tag: str, stats: Any) -> None:
    """The step losses of ``stats`` (a :class:`lada.train.loop.TrainStats`, or None) under
    ``tag``, e.g. ``loss/slm_0_local``."""
    if _sink is not None and stats is not None and stats.step_losses:
        _sink(tag, list(stats.step_losses))
