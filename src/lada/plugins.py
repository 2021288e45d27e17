"""The plug-ins a run config names, by name: hosts (``host:``, settings ``hosts.<name>``) and
engines (``engine:``).

Entries are dotted ``"module:attr"`` strings, imported only when used, so that reading the names
(a config check) imports no plug-in code and no torch. A host's *settings class* lives in a
light module of its own (``lada.hosts.<name>_config``: a dataclass, its field rules, the old
keys it still reads), apart from the host's code, which needs torch. Plug-ins registered at run
time (:func:`lada.hosts.registry.register_host`, :func:`lada.engines.register_engine`) are added
here too, so that a config naming them passes the same checks.

This module sits below both :mod:`lada.config` and the plug-ins: it imports neither.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HostEntry:
    """Where a host's code and its settings class are (``"module"``, ``"module:Class"``)."""

    module: str | None  # None: registered at run time (its class is in lada.hosts.registry)
    settings: str | type | None = None  # the settings dataclass (None: the host has none)
    logits: bool = False  # it compares logits (its Host.compares_logits; host_transfer=all)


# this order is the registry's (and the bench tables')
HOSTS: dict[str, HostEntry] = {
    "sft": HostEntry("lada.hosts.sft"),
    "fedcot": HostEntry("lada.hosts.fedcot", "lada.hosts.fedcot_config:FedCoTConfig"),
    "fedcollm": HostEntry(
        "lada.hosts.fedcollm", "lada.hosts.fedcollm_config:FedCoLLMConfig", logits=True
    ),
    "fedmkt": HostEntry("lada.hosts.fedmkt", "lada.hosts.fedmkt_config:FedMKTConfig", logits=True),
}
BUILTIN_HOSTS: tuple[str, ...] = tuple(HOSTS)

# engine name -> "module:function" (or the function itself, when registered at run time)
ENGINES: dict[str, Any] = {
    "inprocess": "lada.engines.inprocess:run_inprocess",
    "flower-sim": "lada.engines.flower.simulation:run_flower_simulation",
}


def load(target: Any) -> Any:
    """``"module:attr"`` imported; anything else returned as it is."""
    if isinstance(target, str):
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)
    return target


def host_names() -> tuple[str, ...]:
    return tuple(HOSTS)


def engine_names() -> tuple[str, ...]:
    return tuple(ENGINES)


def host_settings_class(name: str) -> type | None:
    """The settings dataclass of host ``name`` (None: it has none, or no such host)."""
    entry = HOSTS.get(name)
    return None if entry is None or entry.settings is None else load(entry.settings)


def host_settings_classes() -> dict[str, type | None]:
    """Every known host's settings class (None where a host has none), in registry order."""
    return {name: host_settings_class(name) for name in HOSTS}


def logit_hosts() -> tuple[str, ...]:
    """The hosts that compare logits (one shared tokenizer; ``host_transfer=all`` allowed)."""
    return tuple(name for name, entry in HOSTS.items() if entry.logits)


def add_host(name: str, settings: type | str | None = None, logits: bool = False) -> None:
    """A host registered at run time (its settings class, if any, as ``hosts.<name>``)."""
    old = HOSTS.get(name)
    if old is not None and old.module is not None:
        return  # a built-in host: its entry stays
    HOSTS[name] = HostEntry(None, settings, logits)


def remove_host(name: str) -> None:
    """Forget a host registered at run time (built-in hosts stay)."""
    entry = HOSTS.get(name)
    if entry is not None and entry.module is None:
        del HOSTS[name]


__all__ = [
    "BUILTIN_HOSTS",
    "ENGINES",
    "HOSTS",
    "HostEntry",
    "add_host",
    "engine_names",
    "host_names",
    "host_settings_class",
    "host_settings_classes",
    "load",
    "logit_hosts",
    "remove_host",
]
