"""Worker processes that end with the run that started them.

:func:`worker_pool` is a ``ProcessPoolExecutor`` (``spawn``) whose workers are terminated
when the block is left by an exception, ``KeyboardInterrupt`` (Ctrl-C) or ``SystemExit``
(SIGTERM, see :func:`exit_on_sigterm`), instead of being waited for; on Linux each worker also
asks the kernel for SIGTERM when the process that started it dies (``PR_SET_PDEATHSIG``), so
not even a SIGKILL of the run leaves one behind. Workers ignore SIGINT: Ctrl-C reaches the
whole terminal's process group, and the parent ends them itself.
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
