"""Hosts by name: ``RunConfig.host`` names a registered :class:`lada.federation.host.Host`.

A host is one module with one class decorated by :func:`register_host` (``docs/hosts.md``),
and, when it has settings, a settings dataclass (``hosts.<name>`` in a run config) in a light
module of its own. The built-in hosts (:data:`BUILTIN_HOSTS`) are listed in :mod:`lada.plugins`
as dotted paths, imported on first use; naming the known hosts imports nothing (a config check
needs no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lada import plugins

if TYPE_CHECKING:
    from lada.federation.host import Host

# this order is the registry's (and the bench tables')
BUILTIN_HOSTS = plugins.BUILTIN_HOSTS

_HOSTS: dict[str, type[Host]] = {}


class UnknownHostError(ValueError):
    pass


def register_host(cls: type[Host]) -> type[Host]:
    """Class decorator: make ``cls`` available as ``host: <cls.name>`` (its settings class,
    ``cls.settings_class``, as ``hosts.<cls.name>``)."""
    name = getattr(cls, "name", "")
    if not name or not isinstance(name, str):
        raise ValueError(f"{cls.__name__}: a host needs a name")
    old = _HOSTS.get(name)
    if old is not None and old is not cls:
        raise ValueError(f"host {name!r} is registered already ({old.__module__}.{old.__name__})")
    _HOSTS[name] = cls
    plugins.add_host(name, getattr(cls, "settings_class", None), bool(cls.compares_logits))
    return cls


def unregister_host(name: str) -> None:
    """Forget host ``name`` (tests that register a host of their own)."""
    _HOSTS.pop(name, None)
    plugins.remove_host(name)


def host_names() -> tuple[str, ...]:
    """The known hosts: the built-in ones first, then the others in registration order."""
    return plugins.host_names()


def host_class(name: str) -> type[Host]:
    entry = plugins.HOSTS.get(name)
    if entry is not None and entry.module is not None and name not in _HOSTS:
        importlib.import_module(entry.module)
    try:
        return _HOSTS[name]
    except KeyError:
        known = ", ".join(host_names())
        raise UnknownHostError(f"unknown host {name!r} (known: {known})") from None


def get_host(name: str, settings: Any = None) -> Host:
    """A fresh instance of the host registered as ``name``, holding ``settings`` (its
    ``hosts.<name>`` section; None: its settings class's defaults)."""
    cls = host_class(name)
    if settings is None:
        settings_class = plugins.host_settings_class(name)
        settings = settings_class() if settings_class is not None else None
    return cls(settings)


__all__ = [
    "BUILTIN_HOSTS",
    "UnknownHostError",
    "get_host",
    "host_class",
    "host_names",
    "register_host",
    "unregister_host",
]
