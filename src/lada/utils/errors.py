"""Errors shared by layers that must not import each other (the config package and the hosts)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value or key is wrong; the message names the file (if any) and the dotted key."""


__all__ = ["ConfigError"]
