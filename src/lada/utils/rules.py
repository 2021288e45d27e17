"""Field rules of config dataclasses: each rule maps a value to what is wrong with it (None: fine).

A config dataclass states its own rules, in one of two ways (both may be used):

* on the field, as metadata: ``alpha: float = setting(0.5, within(0, 1))`` (one line per
  field; :func:`setting` is ``dataclasses.field`` with the rule in its metadata);
* a ``rules()`` classmethod returning ``{field: rule}``.

A class may also state rules across its own fields: a ``relations(values)`` classmethod
returning ``[(field, message), ...]`` for the values as given (only called when every field
passed its own rule). :mod:`lada.config.validate` walks the classes of a run config and formats
each broken rule as one line naming the file, line and dotted key. This module imports nothing
of lada, so that any light settings module can use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

Rule = Callable[[Any], str | None]  # value -> what is wrong (None: fine)

RULE = "lada_rule"  # the metadata key of a field's rule


def setting(default: Any = dataclasses.MISSING, rule: Rule | None = None, **kwargs: Any) -> Any:
    """``dataclasses.field(default=..., **kwargs)`` carrying ``rule`` in its metadata."""
    meta = dict(kwargs.pop("metadata", {}) or {})
    if rule is not None:
        meta[RULE] = rule
    if default is not dataclasses.MISSING:
        kwargs["default"] = default
    return dataclasses.field(metadata=meta, **kwargs)


def field_rules(cls: type) -> dict[str, Rule]:
    """Every field rule of dataclass ``cls``: its bases' first, then its own ``rules()``, then
    its fields' metadata (a later one replaces an earlier one for the same field)."""
    out: dict[str, Rule] = {}
    for klass in reversed(cls.__mro__):
        own = klass.__dict__.get("rules")
        if own is not None:
            out.update(own.__get__(None, klass)())
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            rule = f.metadata.get(RULE)
            if rule is not None:
                out[f.name] = rule
    return out


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (difflib), if any is close enough."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return match[0] if match else None


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def ge(lo: float, none_ok: bool = False, why: str = "") -> Rule:
    def rule(v: Any) -> str | None:
        if v is None and none_ok:
            return None
        if not _number(v) or not math.isfinite(v) or v < lo:
            return f"must be >= {lo:g}" + (" or null" if none_ok else "") + why
        return None

    return rule


def gt(lo: float, none_ok: bool = False, why: str = "") -> Rule:
    def rule(v: Any) -> str | None:
        if v is None and none_ok:
            return None
        if not _number(v) or not math.isfinite(v) or v <= lo:
            return f"must be > {lo:g}" + (" or null" if none_ok else "") + why
        return None

    return rule


def within(lo: float, hi: float, hi_open: bool = False, none_ok: bool = False) -> Rule:
    def rule(v: Any) -> str | None:
        if v is None and none_ok:
            return None
        bad = not _number(v) or not math.isfinite(v) or v < lo or (v >= hi if hi_open else v > hi)
        if bad:
            return f"must lie in [{lo:g}, {hi:g}{')' if hi_open else ']'}" + (
                " or be null" if none_ok else ""
            )
        return None

    return rule


def one_of(names: Callable[[], Iterable[str]], what: str) -> Rule:
    """The value is one of ``names()`` (read when checked: a registry that grows at run time)."""

    def rule(v: Any) -> str | None:
        known = tuple(names())
        if v in known:
            return None
        near = closest(str(v), known)
        return f"unknown {what}; " + (
            f"did you mean {near!r}?" if near else f"{what}s: {', '.join(known)}"
        )

    return rule


def finite(v: Any) -> str | None:
    return None if _number(v) and math.isfinite(v) else "must be a finite number"


def half_open_range(v: Any) -> str | None:
    if v is None:
        return None
    if len(v) != 2 or v[0] < 0 or v[1] <= v[0]:
        return "must be [start, stop) with 0 <= start < stop"
    return None


def step_range(v: Any) -> str | None:
    if len(v) != 2 or not all(isinstance(x, int) for x in v) or not 1 <= v[0] <= v[1]:
        return "must be [lo, hi] reasoning steps with 1 <= lo <= hi, e.g. [1, 4]"
    return None


def betas(v: Any) -> str | None:
    if len(v) != 2 or any(not (_number(b) and 0.0 <= b < 1.0) for b in v):
        return "must be two numbers in [0, 1), e.g. [0.9, 0.95]"
    return None


DTYPES = ("auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16", "half")


def dtype(v: Any) -> str | None:
    if v in DTYPES:
        return None
    near = closest(str(v), DTYPES)
    return f"must be one of {', '.join(DTYPES)}" + (f"; did you mean {near!r}?" if near else "")


def device(v: Any) -> str | None:
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(v)):
        return None
    return "must be auto, cpu, mps, cuda or cuda:N"


__all__ = [
    "DTYPES",
    "RULE",
    "Rule",
    "betas",
    "closest",
    "device",
    "dtype",
    "field_rules",
    "finite",
    "ge",
    "gt",
    "half_open_range",
    "one_of",
    "setting",
    "step_range",
    "within",
]
