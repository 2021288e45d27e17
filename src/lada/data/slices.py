"""Slices of data files per role: apply ``[start, stop)`` ranges, refuse overlaps, record them.

With file data every client holds a private train slice and a private test slice, and the
server holds the public set P. The config gives each as a file plus an optional range
(``clients.K.train_range``, ``clients.K.test_range``, ``data.public_range``). This module cuts
the slices, refuses a client whose train slice, test slice and P share samples (compared by
sample id, so two ranges of one file and two files holding the same ids are both caught), and
describes what was used (file, range, count, sha256 of the ids) for ``RUN/data_used.json``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lada.config.overrides import ConfigError
from lada.data.sample import Sample


class SliceError(ConfigError):
    """A range that does not fit its file, or two slices that share samples."""


@dataclass
class RoleSlice:
    """The samples one role uses: ``key`` is the config key of its range (for messages)."""

    role: str  # "client_0/train", "client_0/test", "public"
    key: str  # "clients.0.train_range"
    file: str
    range: tuple[int, int] | None
    samples: list[Sample]

    def where(self) -> str:
        rng = f"[{self.range[0]}, {self.range[1]})" if self.range else "(whole file)"
        return f"{self.key}={rng} of {self.file}"

    def record(self) -> dict[str, Any]:
        """What was used, for ``data_used.json``."""
        return {
            "role": self.role,
            "file": self.file,
            "range": list(self.range) if self.range else None,
            "count": len(self.samples),
            "ids_sha256": ids_sha256(self.samples),
            "first_id": self.samples[0].id if self.samples else None,
            "last_id": self.samples[-1].id if self.samples else None,
        }


def ids_sha256(samples: Sequence[Sample]) -> str:
    """sha256 of the sample ids in order, one per line."""
    return hashlib.sha256("".join(s.id + "\n" for s in samples).encode()).hexdigest()


def parse_range(value: Sequence[int] | None, key: str) -> tuple[int, int] | None:
    """A config range ``[start, stop)`` as a tuple; clear error naming ``key`` when malformed."""
    if value is None:
        return None
    if (
        len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or value[0] < 0
        or value[1] <= value[0]
    ):
        raise SliceError(f"{key}={list(value)}: expected [start, stop) with 0 <= start < stop")
    return int(value[0]), int(value[1])


def cut(
    role: str, key: str, file: str | Path, samples: Sequence[Sample], value: Sequence[int] | None
) -> RoleSlice:
    """The slice ``value`` of ``samples`` (loaded from ``file``); the whole list when None.

    A range reaching past the end of the file is an error (not silently shortened).
    """
    rng = parse_range(value, key)
    if rng is not None and rng[1] > len(samples):
        raise SliceError(f"{key}=[{rng[0]}, {rng[1]}) but {file} holds only {len(samples)} samples")
    picked = list(samples[rng[0] : rng[1]]) if rng else list(samples)
    return RoleSlice(role, key, str(file), rng, picked)


def check_disjoint(a: RoleSlice, b: RoleSlice) -> None:
    """Raise :class:`SliceError` naming both ranges when ``a`` and ``b`` share a sample id."""
    ids = {s.id for s in a.samples}
    shared = [s.id for s in b.samples if s.id in ids]
    if shared:
        raise SliceError(
            f"{a.where()} overlaps {b.where()}: {len(shared)} shared samples "
            f"(first {shared[0]!r}); give disjoint ranges, or set data.allow_overlap=true "
            "to accept it knowingly"
        )


def check_client_slices(
    train: RoleSlice, test: RoleSlice, public: RoleSlice, *, allow_overlap: bool = False
) -> None:
    """A client's train slice, its test slice and P must be pairwise disjoint."""
    if allow_overlap:
        return
    check_disjoint(train, test)
    check_disjoint(train, public)
    check_disjoint(test, public)


def limit(s: RoleSlice, n: int | None) -> RoleSlice:
    """Keep the first ``n`` samples of the slice (``*_limit`` settings); None keeps all."""
    if n is not None:
        s.samples = s.samples[:n]
    return s
