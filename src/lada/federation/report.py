"""What a round reports (:class:`RoundReport`), its phase timer and the reply filter.

Hosts (``lada.hosts``) and the LaDa plug-in write into the same report through these three
names; they hold no algorithm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lada.federation.protocol import Task
from lada.federation.transport import Failure


@dataclass
class RoundReport:
    round: int
    seconds: dict[str, float] = field(default_factory=dict)
    missed: dict[int, str] = field(default_factory=dict)  # client -> "task: reason"
    rejected: dict[int, str] = field(default_factory=dict)  # ... replies that failed validation
    local: dict[int, dict[str, float]] = field(default_factory=dict)
    selected: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    filter_mode: dict[int, dict[str, str]] = field(default_factory=dict)
    # per client and direction: samples of P outside the candidates (lada.federation.teachable)
    masked: dict[int, dict[str, int]] = field(default_factory=dict)
    rewards: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    distill: dict[int, dict[str, Any]] = field(default_factory=dict)
    slm_eval: dict[int, dict[str, Any]] = field(default_factory=dict)
    llm_eval: dict[int, dict[str, Any]] = field(default_factory=dict)
    # per learner (client k, direction "S"/"L"): the picks' losses, for the bench's filter lift
    learning: dict[int, dict[str, dict[str, list]]] = field(default_factory=dict)
    # allocation=oracle's would-be picks (the oracle diagnostic), client -> direction -> ids
    oracle_selected: dict[int, dict[str, list[str]]] = field(default_factory=dict)


class Phase:
    """``with Phase(report, "name"):`` adds the block's wall time to ``report.seconds[name]``
    (a phase may run twice in a round, e.g. with ``host_transfer=all``: its times add up)."""

    def __init__(self, report: RoundReport, name: str) -> None:
        self.report, self.name = report, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        spent = time.perf_counter() - self.t0
        self.report.seconds[self.name] = self.report.seconds.get(self.name, 0.0) + spent


MAX_REASON_CHARS = 4000  # of a failure's reason in the report (metrics.jsonl, summary.json, log)


def plain_text(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` as one bounded line: control characters (newlines, escapes) shown as ``\\xNN``
    escapes; beyond ``limit`` characters its first and last halves are kept (a traceback's
    last line names the error) around a note of the length cut."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} ... ({len(text)} characters) ... {text[-half:]}"


def ok_replies(report: RoundReport, task: Task | str, replies: dict[int, Any]) -> dict[int, Any]:
    """The replies that are not a :class:`Failure`; each failure is noted in ``report.missed``
    (the first one per client)."""
    good = {}
    for k, r in replies.items():
        if isinstance(r, Failure):
            why = plain_text(r.message)  # it may hold a client's text
            report.missed.setdefault(k, f"{task}: {r.kind}: {why}")
            if r.kind == "rejected":  # lada.federation.guard
                report.rejected.setdefault(k, f"{task}: {why}")
        else:
            good[k] = r
    return good
