"""RUN_DIR/log.txt: everything a run prints on its console, as plain text, appended per run.

:class:`TeeConsole` wraps the terminal's rich console: each ``print`` goes to the terminal and
to the log file. Until the run directory exists (it is created only once the config has been
checked), lines are kept and written as soon as it does, so a config error leaves no directory.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from lada.utils.files import open_append

LOG_WIDTH = 200  # the log is read in editors: wide tables are not folded or clipped


class TeeConsole:
    """A console whose ``print`` also appends to ``path`` (created with its folder's first use)."""

    def __init__(self, console: Any, path: str | Path) -> None:
        self.console = console
        self.path = Path(path)
        self._pending: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self._started = False

    def __getattr__(self, name: str) -> Any:  # width, is_terminal, …: the terminal's
        return getattr(self.console, name)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)
        self._pending.append((objects, kwargs))
        self.flush()

    def flush(self) -> None:
        """Write the kept lines once the run directory exists."""
        if not self._pending or not self.path.parent.is_dir():
            return
        from rich.console import Console

        with open_append(self.path) as f:
            log = Console(file=f, width=LOG_WIDTH, color_system=None, soft_wrap=False)
            if not self._started:
                stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                log.print(f"---- {stamp} ----")
                self._started = True
            for objects, kwargs in self._pending:
                log.print(*objects, **kwargs)
        self._pending.clear()

    def write_error(self, text: str) -> None:
        """Append an error (a traceback) to the log, if the run directory exists."""
        if self.path.parent.is_dir():
            self.flush()
            with open_append(self.path) as f:
                f.write(text if text.endswith("\n") else text + "\n")
