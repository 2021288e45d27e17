"""Where validation meets the roles: the server's :class:`GuardedTransport` and the client's
:func:`answer` (ours; docs/threat-model.md).

``guarded(transport, server)`` wraps any engine's transport: every reply is checked by
:func:`lada.federation.validation.validate_reply` against the instruction that was sent, and
a bad one becomes ``Failure("rejected", reason)``, so the round treats its sender exactly as a
client that did not answer (reported in the round's ``missed`` and ``rejected``). Nothing of a
rejected reply reaches a filter, the training data or a checkpoint.

``answer(role, task, ins)`` is the client's side: it refuses an invalid instruction
(:class:`lada.federation.validation.InvalidMessage`, which the engine reports as that client's
error) and stamps the reply with its :class:`lada.federation.protocol.Echo`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from lada.config.schema import LimitsConfig
from lada.federation.protocol import Echo, Payload, Task
from lada.federation.report import plain_text
from lada.federation.transport import CommLog, Failure, Transport
from lada.federation.validation import Expected, validate_instruction, validate_reply

log = logging.getLogger("lada.validation")

T = TypeVar("T")
REJECTED = "rejected"  # Failure.kind of a reply that failed validation


class GuardedTransport:
    """A :class:`Transport` whose replies have passed :func:`validate_reply`."""

    def __init__(
        self,
        inner: Transport,
        limits: LimitsConfig,
        feature_dim: Callable[[int], int | None] | None = None,
        expected: Callable[[Task], Expected | None] | None = None,
    ) -> None:
        """``feature_dim(k)``: the width client k's filters take; ``expected(task)``: what
        every reply to ``task`` must match (both None when unknown)."""
        self.inner = inner
        self.limits = limits
        self.feature_dim = feature_dim or (lambda _k: None)
        self.expected = expected or (lambda _t: None)

    @property
    def comm(self) -> CommLog:
        return self.inner.comm

    def clients(self) -> list[int]:
        return self.inner.clients()

    def broadcast(
        self, round_idx: int, task: Task, instructions: dict[int, Payload]
    ) -> dict[int, Payload | Failure]:
        replies = self.inner.broadcast(round_idx, task, instructions)
        out: dict[int, Payload | Failure] = {}
        expect = (
            self.expected(task)
            if any(not isinstance(r, Failure) for r in replies.values())
            else None
        )
        for k in sorted(instructions):
            r = replies.get(k)
            if r is None:
                out[k] = Failure("error", f"the engine returned no reply for client {k}")
            elif isinstance(r, Failure):
                out[k] = r
            else:
                dim = self.feature_dim(k) if task == Task.EMBED else None
                why = validate_reply(
                    task, instructions[k], r, self.limits, client=k, feature_dim=dim, expect=expect
                )
                if why is None:
                    out[k] = r
                else:
                    log.warning(
                        "rejected client %d's %s reply in round %d: %s", k, task, round_idx, why
                    )
                    out[k] = Failure(REJECTED, why)
        for k in sorted(set(replies) - set(instructions)):
            log.warning("dropped a %s reply from client %d, which was not asked", task, k)
        return out


def guarded(transport: Transport, server: Any, host: Any = None) -> Transport:
    """``transport`` behind the server's reply checks (idempotent); what replies to a host's
    own tasks must match comes from ``host.expected_reply`` (a
    :class:`lada.federation.host.Host`; e.g. FedMKT's vocabulary, FedCoLLM's weight layout)."""
    if isinstance(transport, GuardedTransport):
        return transport
    return GuardedTransport(
        transport,
        server.settings.limits,
        server.expected_feature_dim,
        (lambda task: _with_vocab_rows(server, task, host.expected_reply(server, task)))
        if host is not None
        else None,
    )


def _with_vocab_rows(server: Any, task: Task | str, expect: Expected | None) -> Expected | None:
    """A LOGITS reply's token ids must index the server's LLM logits (its output rows)."""
    if task != Task.LOGITS or expect is None:
        return expect
    from dataclasses import replace

    out = server.model.get_output_embeddings()
    rows = None if out is None else int(out.weight.shape[0])
    return replace(expect, vocab_rows=rows)


def contain(report: Any, k: int, step: str, fn: Callable[[], T]) -> T | None:
    """``fn()``, a server step on client ``k``'s data alone; when it raises, the client is
    rejected for the round (``report.missed`` and ``report.rejected``, as a reply that failed
    validation) and None comes back, so the round goes on without it. Steps that touch a
    filter refuse bad numbers before changing it (:mod:`lada.filter.guard`)."""
    try:
        return fn()
    except Exception as e:  # one client's data must not stop the run
        log.warning("client %d rejected at %s: %s: %s", k, step, type(e).__name__, e)
        log.debug("traceback", exc_info=True)
        why = plain_text(f"{type(e).__name__}: {e}")
        report.missed.setdefault(k, f"{step}: {REJECTED}: {why}")
        report.rejected.setdefault(k, f"{step}: {why}")
        return None


def answer(role: Any, task: Task, ins: Payload, handle: Callable[[Payload], Payload]) -> Payload:
    """The client's side: check ``ins``, run ``handle(ins)``, stamp the reply's echo."""
    validate_instruction(task, ins, role.settings.limits, role.public)
    reply = handle(ins)
    reply.echo = Echo(str(task), int(ins.round), int(role.cid))  # type: ignore[attr-defined,misc]
    return reply
