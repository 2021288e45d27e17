"""Rich progress bars for the long phases (evaluation, path generation, scoring, distillation).

One bar at a time: rich allows a single live display, so a bar opened while another is showing
is a silent no-op (its phase is already covered by the outer bar). Bars are transient (they
vanish when done), drawn on stderr only when it is a terminal, and off with ``LADA_PROGRESS=0``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

_active = threading.local()


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


@contextlib.contextmanager
def progress_bar(desc: str, total: int | None) -> Iterator[_Bar]:
    """A transient bar ``desc ━━━ n/total eta``; yields an object with ``advance(n)``."""
    if getattr(_active, "on", False) or not enabled() or not total:
        yield _Bar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task(desc, total=total, info="")
    _active.on = True
    try:
        with progress:
            yield _Bar(progress, task)
    finally:
        _active.on = False
