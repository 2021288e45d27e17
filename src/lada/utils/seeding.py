"""Deterministic seeds derived from a base seed and names (round, role, task)."""

from __future__ import annotations

import hashlib
import random


def derive_seed(base: int, *keys: object) -> int:
    """A 31-bit seed that depends only on ``base`` and ``keys`` (stable across processes)."""
    text = ":".join([str(base), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
