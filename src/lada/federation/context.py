"""What a round's steps hand each other: the round in progress (:class:`RoundContext`), the
picks of one exchange step (:class:`Picks`) and what it taught (:class:`Learned`). Shared by
the host interface (:mod:`lada.federation.host`) and the path exchange
(:mod:`lada.federation.paths`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lada.federation.protocol import PathsRes, Payload, Task
from lada.federation.report import Phase, RoundReport, ok_replies
from lada.federation.server import Allocation, LearnerLosses, ServerRole
from lada.federation.transport import Transport


@dataclass
class RoundContext:
    """One round in progress: who takes part, and where its results go."""

    round: int
    server: ServerRole
    transport: Transport
    report: RoundReport
    alive: list[int]  # clients still in the round (a client that failed a task sits out)
    host_state: Any = None  # what a host's after-local step hands to its exchange

    def broadcast(self, task: Task | str, ins: Mapping[int, Payload]) -> dict[int, Any]:
        """Send ``ins[k]`` to each client k; the good replies (failures go to the report)."""
        replies = self.transport.broadcast(self.round, task, dict(ins))  # type: ignore[arg-type]
        return self.ok(task, replies)

    def ok(self, task: Task | str, replies: dict[int, Any]) -> dict[int, Any]:
        """The good replies of a broadcast made elsewhere (failures go to the report)."""
        return ok_replies(self.report, task, replies)

    def phase(self, name: str) -> Phase:
        return Phase(self.report, name)

    def drop_missed(self) -> None:
        """A client that failed any task sits out the rest of the round (keeps its state)."""
        self.alive = [k for k in self.alive if k not in self.report.missed]


@dataclass
class Picks:
    """The public ids each (SLM k, LLM) pair transfers in one exchange step, per direction."""

    alloc: dict[int, Allocation]
    directions: tuple[str, ...]
    rewards: bool = False  # the picks are the LaDa filters': the learners' losses reward them
    with_paths: bool = True  # reasoning paths (and λ·L_CD) join a logit host's exchange
    llm_paths: dict[str, str] = field(default_factory=dict)  # LLM paths already generated
    slm_paths: dict[int, PathsRes] = field(default_factory=dict)  # SLM paths already generated
    # paths of the server's copy of the SLM already generated (FedCoLLM's averaged SLM)
    server_slm_paths: dict[str, str] = field(default_factory=dict)


@dataclass
class Learned:
    """What one exchange step taught: each learner's losses on its picks, in the order the
    rewards are computed ((client, direction, losses)), and further per-client report fields."""

    losses: list[tuple[int, str, LearnerLosses]] = field(default_factory=list)
    fields: dict[int, dict[str, Any]] = field(default_factory=dict)

    def record(self, report: RoundReport) -> None:
        """Each learner's losses on its picks into ``report.learning``, their means before and
        after (``slm_*`` for S, ``llm_*`` for L), its L_CD pairs (``slm_pairs`` /
        ``llm_pairs``) and the fields into ``report.distill``."""
        for k, side, ll in self.losses:
            report.learning.setdefault(k, {})[side] = ll.as_lists()
            key = "slm" if side == "S" else "llm"
            report.distill.setdefault(k, {}).update(
                {
                    f"{key}_loss_before": ll.mean("loss_before"),
                    f"{key}_loss_after": ll.mean("loss_after"),
                }
            )
            if ll.num_pairs is not None:
                report.distill[k][f"{key}_pairs"] = ll.num_pairs
        for k, extra in self.fields.items():
            report.distill.setdefault(k, {}).update(extra)
