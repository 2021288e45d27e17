"""Rich progress bars for the long phases (local training, evaluation, path generation,
scoring, distillation, pretraining).

One bar at a time: rich allows a single live display, so a bar opened while another is showing
(in any thread) is a silent no-op (its phase is already covered by the outer bar). Bars are
transient (they vanish when done), drawn on stderr only when it is a terminal, and off with
``LADA_PROGRESS=0``.

Work spread over processes (pretraining several zoo models) shows one :class:`Board`: each
worker calls :func:`report_to` with the board's queue, and its bars become rows of the board
(a live table on a terminal; otherwise a line per tenth done, with the time left).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_active = False  # a live bar is showing (rich allows one per process)
_sink: tuple[Any, str] | None = None  # (queue, row name): bars report to a Board instead


class _Bar:
    def __init__(self, progress=None, task=None) -> None:
        self.progress, self.task = progress, task

    def advance(self, n: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def info(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, info=text)


def enabled() -> bool:
    if os.environ.get("LADA_PROGRESS", "1") == "0":
        return False
    import sys

    return sys.stderr.isatty()


def report_to(queue: Any, name: str | None) -> None:
    """Send this process's bars to a :class:`Board` as row ``name`` (None: draw them here)."""
    global _sink
    _sink = None if name is None else (queue, name)


class _SinkBar(_Bar):
    def __init__(self, queue: Any, name: str, total: int) -> None:
        super().__init__(progress=queue, task=name)  # progress not None: callers add info
        queue.put((name, "start", total))

    def advance(self, n: int = 1) -> None:
        self.progress.put((self.task, "advance", n))

    def info(self, text: str) -> None:
        self.progress.put((self.task, "info", text))


@contextlib.contextmanager
def progress_bar(desc: str, total: int | None) -> Iterator[_Bar]:
    """A transient bar ``desc ━━━ n/total eta``; yields an object with ``advance(n)``."""
    global _active
    if _sink is not None and total:
        yield _SinkBar(_sink[0], _sink[1], total)
        return
    with _lock:
        busy = _active or not enabled() or not total
        _active = _active or not busy
    if busy:
        yield _Bar()
        return
    from rich.console import Console
    from rich.progress import Progress

    progress = Progress(*_columns(), console=Console(stderr=True), transient=True)
    task = progress.add_task(desc, total=total, info="")
    try:
        with progress:
            yield _Bar(progress, task)
    finally:
        with _lock:
            _active = False


def _columns() -> list[Any]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]


class Board:
    """Rows of progress reported by other processes (or threads) through ``self.queue``.

    On a terminal: a live rich table (bar, n/total, elapsed, time left, loss). Otherwise (a log
    file): one line per row and tenth done, with the steps, the loss and the time left.
    ``queue`` must reach the workers: pass a ``multiprocessing`` manager's queue for processes.
    """

    def __init__(self, queue: Any, title: str, log: Any = None) -> None:
        self.queue, self.title = queue, title
        self.log = log or (lambda text: print(text, file=__import__("sys").stderr, flush=True))
        self._rows: dict[str, dict[str, Any]] = {}
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._progress: Any = None

    def __enter__(self) -> Board:
        if enabled():
            from rich.console import Console
            from rich.progress import Progress

            self._progress = Progress(*_columns(), console=Console(stderr=True))
            self._progress.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.put(None)
        self._thread.join(timeout=10)
        if self._progress is not None:
            self._progress.stop()

    def _drain(self) -> None:
        while (event := self.queue.get()) is not None:
            self.handle(*event)

    def handle(self, name: str, kind: str, value: Any) -> None:
        """One event of row ``name``: ``start`` (value: total), ``advance`` (steps), ``info``."""
        row = self._rows.get(name)
        if kind == "start":
            row = self._rows[name] = {"total": int(value), "done": 0, "info": "", "t0": time.time()}
            row["next"] = max(1, row["total"] // 10)
            if self._progress is not None:
                row["task"] = self._progress.add_task(
                    f"{self.title} {name}", total=row["total"], info=""
                )
            return
        if row is None:
            return
        if kind == "info":
            row["info"] = str(value)
        elif kind == "advance":
            row["done"] += int(value)
        if self._progress is not None:
            self._progress.update(row["task"], completed=row["done"], info=row["info"])
        elif kind == "advance" and (row["done"] >= row["next"] or row["done"] >= row["total"]):
            row["next"] += max(1, row["total"] // 10)
            self.log(self.line(name))

    def line(self, name: str) -> str:
        """``title name: done/total steps (pct), info, time left`` (the log form of a row)."""
        row = self._rows[name]
        took = time.time() - row["t0"]
        done, total = row["done"], row["total"]
        left = took / done * (total - done) if done else float("nan")
        eta = "done" if done >= total else f"about {_clock(left)} left"
        info = f", {row['info']}" if row["info"] else ""
        return f"{self.title} {name}: {done}/{total} steps ({100 * done / total:.0f}%){info}, {eta}"


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"
