"""Shared fixtures: a session-wide model cache and the tiny federated config."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# tiny models gain nothing from intra-op threads, and lose a lot when the cores are shared
torch.set_num_threads(1)

from lada.config.presets import TINY  # noqa: E402

__all__ = ["TINY"]  # tests import it from here


@pytest.fixture(scope="session", autouse=True)
def lada_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Prepared tiny models are cached once per test session (never in the user's cache)."""
    path = str(tmp_path_factory.mktemp("lada-cache"))
    old = os.environ.get("LADA_CACHE")
    os.environ["LADA_CACHE"] = path
    yield path
    if old is None:
        os.environ.pop("LADA_CACHE", None)
    else:
        os.environ["LADA_CACHE"] = old


@pytest.fixture()
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture()
def single_thread() -> Iterator[None]:
    """Tiny problems: one thread avoids OpenMP/BLAS oversubscription on a busy test machine
    (use it per module: ``pytestmark = pytest.mark.usefixtures("single_thread")``)."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)
