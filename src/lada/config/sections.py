"""Plug-in sections of the run config (``hosts.<name>``) and keys that moved (still read).

``RunConfig.hosts`` maps a host's name to its settings dataclass; which class that is comes
from :mod:`lada.plugins` (a dotted path, imported when a config is built), so this package
imports no host. A host's settings class may list ``renamed`` (old dotted key -> its field):
such a key is still read, moved to ``hosts.<name>.<field>``, with a one-line notice
(:class:`ConfigKeyRenamed`). The run config's own moved keys are :data:`RENAMED`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from lada import plugins


class ConfigKeyRenamed(UserWarning):
    """An old config key was read; the message names the new one (one line)."""


@dataclass(frozen=True)
class Sections:
    """Type marker (``Annotated[dict[str, Any], Sections("host")]``): a mapping from plug-in
    name to that plug-in's settings dataclass, built by :func:`lada.config.overrides.build`."""

    kind: str  # "host"

    def classes(self) -> dict[str, type | None]:
        return plugins.host_settings_classes()


HOST_SECTIONS = Sections("host")


def default_host_settings() -> dict[str, Any]:
    """Every known host's default settings (hosts without settings have no entry)."""
    return {name: cls() for name, cls in plugins.host_settings_classes().items() if cls}


# keys renamed or moved, still read with a one-line notice: old dotted key -> new dotted key
# ("*" stands for any list index or key, e.g. "clients.*.old" -> "clients.*.new"). A plug-in's
# settings class lists its own (``renamed``, e.g. lada.hosts.fedcot_config).
RENAMED: dict[str, str] = {}


def renamed_keys() -> dict[str, list[str]]:
    """Old dotted key -> the new key(s) it is read as (one old key may feed several hosts)."""
    out: dict[str, list[str]] = {old: [new] for old, new in RENAMED.items()}
    for name, cls in plugins.host_settings_classes().items():
        for old, new in (getattr(cls, "renamed", None) or {}).items():
            out.setdefault(old, []).append(f"hosts.{name}.{new}")
    return out


def _matches(data: Any, parts: list[str], prefix: list[str]) -> list[list[str]]:
    """Concrete key paths in ``data`` matching ``parts`` ("*": any key or list index)."""
    if not parts:
        return [prefix]
    head, rest = parts[0], parts[1:]
    if isinstance(data, dict):
        keys = [k for k in data if head == "*" or str(k) == head]
        return [m for k in keys for m in _matches(data[k], rest, [*prefix, str(k)])]
    if isinstance(data, list):
        idx = range(len(data)) if head == "*" else [int(head)] if head.isdigit() else []
        return [m for i in idx if i < len(data) for m in _matches(data[i], rest, [*prefix, str(i)])]
    return []


def _get(data: Any, path: list[str]) -> Any:
    for p in path:
        data = data[int(p)] if isinstance(data, list) else data[p]
    return data


def _has(data: Any, path: list[str]) -> bool:
    try:
        _get(data, path)
        return True
    except (KeyError, IndexError, ValueError, TypeError):
        return False


def _set(data: dict[str, Any], path: list[str], value: Any) -> None:
    node: Any = data
    for p in path[:-1]:
        if isinstance(node, list):
            node = node[int(p)]
        else:
            if not isinstance(node.get(p), dict | list):
                node[p] = {}
            node = node[p]
    if isinstance(node, list):
        node[int(path[-1])] = value
    else:
        node[path[-1]] = value


def _concrete(pattern: str, stars: list[str]) -> list[str]:
    it = iter(stars)
    return [next(it, p) if p == "*" else p for p in pattern.split(".")]


def _stars(pattern: str, concrete: list[str]) -> list[str]:
    return [c for p, c in zip(pattern.split("."), concrete, strict=True) if p == "*"]


def notice(old: str, new: list[str], where: str) -> None:
    """The one-line notice for an old key that was read."""
    listed = " and ".join(f"'{n}'" for n in new)
    warnings.warn(
        ConfigKeyRenamed(f"{where}config key '{old}' is now {listed}; read as such (rename it)"),
        stacklevel=3,
    )


def apply_renames(data: dict[str, Any], where: str = "") -> dict[str, str]:
    """Move every old key of one config file's raw mapping to its new key(s), in place, with a
    notice each (a new key written in the same file wins). Returns new key -> old key."""
    moved: dict[str, str] = {}
    for old, news in renamed_keys().items():
        for path in _matches(data, old.split("."), []):
            value = _get(data, path)
            parent = _get(data, path[:-1]) if len(path) > 1 else data
            if isinstance(parent, dict):
                del parent[path[-1]]
            stars = _stars(old, path)
            targets = [_concrete(n, stars) for n in news]
            for t in targets:
                if not _has(data, t):
                    _set(data, t, value)
                moved[".".join(t)] = ".".join(path)
            notice(".".join(path), [".".join(t) for t in targets], where)
    return moved


def rename_override(item: str) -> list[str]:
    """A ``key=value`` override of an old key as the override(s) of its new key(s) (with a
    notice); any other override unchanged."""
    if "=" not in item:
        return [item]
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    for old, news in renamed_keys().items():
        pattern = old.split(".")
        if len(pattern) == len(parts) and all(
            p in ("*", k) for p, k in zip(pattern, parts, strict=True)
        ):
            stars = [k for p, k in zip(pattern, parts, strict=True) if p == "*"]
            new_keys = [".".join(_concrete(n, stars)) for n in news]
            notice(key.strip(), new_keys, f"override {item!r}: ")
            return [f"{k}={raw}" for k in new_keys]
    return [item]


__all__ = [
    "HOST_SECTIONS",
    "ConfigKeyRenamed",
    "Sections",
    "apply_renames",
    "default_host_settings",
    "rename_override",
    "renamed_keys",
]
