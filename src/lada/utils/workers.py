"""Worker processes that end with the run that started them.

:func:`worker_pool` is a ``ProcessPoolExecutor`` (``spawn``) whose workers are terminated
when the block is left by an exception, ``KeyboardInterrupt`` (Ctrl-C) or ``SystemExit``
(SIGTERM, see :func:`exit_on_sigterm`), instead of being waited for; on Linux each worker also
asks the kernel for SIGTERM when the process that started it dies (``PR_SET_PDEATHSIG``), so
not even a SIGKILL of the run leaves one behind. Workers ignore SIGINT: Ctrl-C reaches the
whole terminal's process group, and the parent ends them itself.

:func:`spawn_manager` is a ``spawn`` ``SyncManager`` (shared queues for workers) whose start
cannot be cut in half: SIGINT and SIGTERM wait until its server process is up. Interrupted
while it starts, Python would leave that server running and join it forever at exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.managers import SyncManager

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Worker initializer: SIGTERM when ``parent`` dies (Linux), SIGINT left to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def terminate(pool: ProcessPoolExecutor, timeout: float = 5.0) -> None:
    """End ``pool``'s workers now (SIGTERM, then SIGKILL after ``timeout`` s) and drop its
    queued tasks."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
    pool.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A ``spawn`` process pool of ``workers`` processes: waited for when the block ends
    normally, terminated (:func:`terminate`) when it ends by any exception or interrupt."""
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        yield pool
    except BaseException:
        terminate(pool)
        raise
    pool.shutdown(wait=True)


def exit_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit(143)`` in the main thread, so that ``finally`` blocks
    and :func:`worker_pool` clean up as they do for Ctrl-C (the default action would end the
    process at once and leave its workers running). Only the main thread can set it: a no-op
    elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held(*sigs: signal.Signals) -> Iterator[None]:
    """Hold ``sigs`` (default: SIGINT, SIGTERM) while the block runs and deliver them after it,
    to the handlers of before: for a start-up that must not be cut in half. The handlers are
    swapped, not the signal mask (another thread would take a masked process signal). Main
    thread only (a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        pending.append(signum)

    old = {s: signal.signal(s, hold) for s in sigs or HELD_SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(pending):
            signal.raise_signal(s)


@contextlib.contextmanager
def spawn_manager() -> Iterator[SyncManager]:
    """A started ``spawn`` SyncManager, shut down when the block ends. Its start holds SIGINT
    and SIGTERM (:func:`signals_held`), so an interrupt arrives once the server is up and its
    shutdown is registered, never in between; the server gets SIGTERM if the run dies."""
    manager = SyncManager(ctx=mp.get_context("spawn"))
    with signals_held():
        manager.start(_die_with_parent, (os.getpid(),))
    with manager:
        yield manager
