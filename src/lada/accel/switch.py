"""The process's runtime setting (:class:`lada.accel.settings.RuntimeConfig`): set once per
process by :func:`configure` (each role's loader does, so every engine's worker processes
follow the run's config), read by the speed machinery."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from lada.accel.settings import ACCEL, GENERATORS, RuntimeConfig

_current = RuntimeConfig()


def configure(runtime: RuntimeConfig) -> None:
    """Make ``runtime`` this process's setting (a clear error for an unknown value)."""
    global _current
    if runtime.accel not in ACCEL:
        raise ValueError(f"runtime.accel={runtime.accel!r}: expected one of {', '.join(ACCEL)}")
    if runtime.generator not in GENERATORS:
        raise ValueError(
            f"runtime.generator={runtime.generator!r}: expected one of {', '.join(GENERATORS)}"
        )
    _current = dataclasses.replace(runtime)


def current() -> RuntimeConfig:
    return _current


@contextlib.contextmanager
def using(**changes: str) -> Iterator[RuntimeConfig]:
    """The setting with ``changes`` (e.g. ``accel="torch"``) for the block, then the old one."""
    old = _current
    configure(dataclasses.replace(old, **changes))
    try:
        yield _current
    finally:
        configure(old)


def kernels_allowed() -> bool:
    """Whether C kernels may run (``accel: native``)."""
    return _current.accel == "native"


def speedups_allowed() -> bool:
    """Whether LaDa's PyTorch speed path may run (``accel`` is ``torch`` or ``native``)."""
    return _current.accel in ("torch", "native")


def compile_enabled() -> bool:
    """Whether training, scoring and generation run through torch.compile (``accel: compile``,
    :mod:`lada.accel.compiled`)."""
    return _current.accel == "compile"
