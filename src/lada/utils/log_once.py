"""Log a message once per process: for notes that would otherwise repeat at every call (which
decoder a model runs, why its weights are not packed)."""

from __future__ import annotations

import logging

_SAID: set[tuple[str, int, str]] = set()


def log_once(logger: logging.Logger, message: str, level: int = logging.INFO) -> None:
    """``logger.log(level, message)`` the first time this logger gets this message."""
    key = (logger.name, level, message)
    if key not in _SAID:
        _SAID.add(key)
        logger.log(level, message)


def forget() -> None:
    """Let every message be logged once more (for tests)."""
    _SAID.clear()
