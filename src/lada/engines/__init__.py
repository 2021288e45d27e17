"""Engines carry the protocol's messages: in-process (default) and Flower.

An engine is a function ``(cfg, run_dir, last_complete_round, console) -> metrics records``
that builds the roles (:mod:`lada.runner.roles`), a transport, and hands them to
:func:`lada.runner.drive.drive`. ``RunConfig.engine`` names one of this registry; built-in
engines are given as ``"module:function"`` and imported only when used (Flower is heavy).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lada import plugins

Engine = Callable[[Any, Path, int, Any], list[dict[str, Any]]]

# the registry (built-in entries: lada.plugins.ENGINES, which config checks read without
# importing any engine); register_engine adds to it
_ENGINES: dict[str, str | Engine] = plugins.ENGINES


def register_engine(name: str, engine: str | Engine) -> None:
    """Make ``engine`` (a function, or ``"module:function"``) available as ``engine: name``."""
    _ENGINES[name] = engine


def engine_names() -> tuple[str, ...]:
    return tuple(_ENGINES)


def get_engine(name: str) -> Engine:
    """The engine registered as ``name``."""
    from lada.config.overrides import ConfigError

    entry = _ENGINES.get(name)
    if entry is None:
        raise ConfigError(f"engine: unknown engine {name!r} (known: {', '.join(_ENGINES)})")
    if isinstance(entry, str):
        module, attr = entry.split(":")
        entry = getattr(importlib.import_module(module), attr)
    return entry


__all__ = ["Engine", "engine_names", "get_engine", "register_engine"]
