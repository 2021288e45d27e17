"""What the round logic needs from an engine: send one task to some clients, get replies.

The algorithm sees only this interface; engines (in-process, Flower) implement it and count
the bytes of every message in a :class:`CommLog`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from lada.federation.protocol import Payload, Task


@dataclass(frozen=True)
class Failure:
    """A client that did not answer a task: it raised, timed out or was unreachable."""

    kind: str  # "error" | "timeout" | "unreachable"
    message: str


@dataclass
class CommLog:
    """Bytes sent per round, task and direction (down = server to client)."""

    bytes: dict[tuple[int, str, str], int] = field(default_factory=lambda: defaultdict(int))

    def add(self, round_idx: int, task: Task | str, direction: str, n: int) -> None:
        self.bytes[(round_idx, str(task), direction)] += n

    def round_totals(self, round_idx: int) -> dict[str, int]:
        out = {"up": 0, "down": 0}
        for (r, _, d), n in self.bytes.items():
            if r == round_idx:
                out[d] += n
        return out

    def round_by_task(self, round_idx: int) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (r, t, d), n in sorted(self.bytes.items()):
            if r == round_idx:
                out.setdefault(t, {"up": 0, "down": 0})[d] += n
        return out


class Transport(Protocol):
    comm: CommLog

    def clients(self) -> list[int]:
        """Ids of the clients this engine can reach."""
        ...

    def broadcast(
        self, round_idx: int, task: Task, instructions: dict[int, Payload]
    ) -> dict[int, Payload | Failure]:
        """Send ``instructions[k]`` to each client k; a reply or a Failure per client."""
        ...
