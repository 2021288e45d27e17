"""Hosts by name: ``RunConfig.host`` names a registered :class:`lada.federation.host.Host`.

A host is one module with one class decorated by :func:`register_host` (``docs/hosts.md``).
The built-in hosts (:data:`BUILTIN_HOSTS`) are modules ``lada.hosts.<name>``, imported on first
use; naming the known hosts imports nothing (a config check needs no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lada.federation.host import Host

# this order is the registry's (and the bench tables')
BUILTIN_HOSTS = ("sft", "fedcot", "fedcollm", "fedmkt")

_HOSTS: dict[str, type[Host]] = {}


class UnknownHostError(ValueError):
    pass


def register_host(cls: type[Host]) -> type[Host]:
    """Class decorator: make ``cls`` available as ``host: <cls.name>``."""
    name = getattr(cls, "name", "")
    if not name or not isinstance(name, str):
        raise ValueError(f"{cls.__name__}: a host needs a name")
    old = _HOSTS.get(name)
    if old is not None and old is not cls:
        raise ValueError(f"host {name!r} is registered already ({old.__module__}.{old.__name__})")
    _HOSTS[name] = cls
    return cls


def unregister_host(name: str) -> None:
    """Forget host ``name`` (tests that register a host of their own)."""
    _HOSTS.pop(name, None)


def host_names() -> tuple[str, ...]:
    """The known hosts: the built-in ones first, then the others in registration order."""
    return BUILTIN_HOSTS + tuple(n for n in _HOSTS if n not in BUILTIN_HOSTS)


def host_class(name: str) -> type[Host]:
    if name in BUILTIN_HOSTS and name not in _HOSTS:
        importlib.import_module(f"lada.hosts.{name}")
    try:
        return _HOSTS[name]
    except KeyError:
        known = ", ".join(host_names())
        raise UnknownHostError(f"unknown host {name!r} (known: {known})") from None


def get_host(name: str) -> Host:
    """A fresh instance of the host registered as ``name``."""
    return host_class(name)()


__all__ = [
    "BUILTIN_HOSTS",
    "UnknownHostError",
    "get_host",
    "host_class",
    "host_names",
    "register_host",
    "unregister_host",
]
