"""Lazy package namespaces (PEP 562): a package lists its public names and the modules that
define them, and a name's module is imported on first use. ``lada.filter`` and
``lada.models`` use it so that their light modules (configs) load without torch: the CLI
validates a config before any heavy import."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that imports ``exports[name]`` on first
    use of ``name`` and returns its attribute of that name."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
