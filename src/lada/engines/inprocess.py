"""The default engine: all roles in one process, deterministic, no network.

Every message is really serialised to bytes and parsed back on the other side (so the roles
share no objects and the byte counts are those of a real wire format), and clients run one
after another in id order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lada.config.schema import FaultSpec
from lada.federation.client import ClientRole
from lada.federation.protocol import (
    INSTRUCTIONS,
    RESULTS,
    Payload,
    Task,
    WireError,
    decode,
    encode,
)
from lada.federation.transport import CommLog, Failure

log = logging.getLogger("lada.engine")


class InjectedFault(RuntimeError):
    """Raised by the fault plan (tests and demos), as a crashing client would."""


class InProcessEngine:
    def __init__(
        self,
        clients: dict[int, ClientRole],
        timeouts: dict[int, float | None] | None = None,
        faults: list[FaultSpec] | None = None,
        tap: Callable[[int, Task, str, int, bytes], None] | None = None,
    ) -> None:
        """``tap(round, task, direction, client, wire_bytes)`` sees every message (audits)."""
        self._clients = clients
        self.tap = tap
        self.timeouts = timeouts or {}
        self.faults = faults or []
        self.comm = CommLog()

    def clients(self) -> list[int]:
        return sorted(self._clients)

    def _fault(self, k: int, round_idx: int, task: Task) -> FaultSpec | None:
        for f in self.faults:
            if f.client == k and f.round == round_idx and f.task == str(task):
                return f
        return None

    def _sent(self, round_idx: int, task: Task, direction: str, k: int, wire: bytes) -> None:
        self.comm.add(round_idx, task, direction, len(wire))
        if self.tap is not None:
            self.tap(round_idx, task, direction, k, wire)

    def broadcast(
        self, round_idx: int, task: Task, instructions: dict[int, Payload]
    ) -> dict[int, Payload | Failure]:
        replies: dict[int, Payload | Failure] = {}
        for k in sorted(instructions):
            wire = encode(instructions[k].to_record())
            self._sent(round_idx, task, "down", k, wire)
            ins = INSTRUCTIONS[task].from_record(decode(wire))
            t0 = time.perf_counter()
            try:
                fault = self._fault(k, round_idx, task)
                if fault is not None and fault.kind == "raise":
                    raise InjectedFault(f"injected fault: client {k}, round {round_idx}, {task}")
                if fault is not None and fault.kind == "delay":
                    time.sleep(fault.delay_s)
                reply = self._clients[k].handle(task, ins)
            except Exception as e:  # a client's crash must not stop the federation
                replies[k] = Failure("error", f"{type(e).__name__}: {e}")
                log.warning("client %d failed %s in round %d", k, task, round_idx, exc_info=True)
                continue
            elapsed = time.perf_counter() - t0
            limit = self.timeouts.get(k)
            if limit is not None and elapsed > limit:
                # in one process a slow step cannot be pre-empted: its late reply is dropped
                replies[k] = Failure("timeout", f"{task} took {elapsed:.1f}s > timeout {limit}s")
                continue
            if fault is not None and fault.kind == "corrupt":
                from lada.federation.corrupt import corrupt

                reply = corrupt(reply, fault.corruption)
            try:
                wire = encode(reply.to_record())
            except Exception as e:  # what a client returns is not trusted to be encodable
                replies[k] = Failure("error", f"unencodable {task} reply: {type(e).__name__}: {e}")
                continue
            self._sent(round_idx, task, "up", k, wire)
            try:
                replies[k] = RESULTS[task].from_record(decode(wire))
            except WireError as e:
                replies[k] = Failure("rejected", f"malformed {task} reply: {e}")
        return replies


def run_inprocess(cfg: Any, run_dir: Path, last: int, console: Any = None) -> list[dict[str, Any]]:
    """The ``inprocess`` engine: the data, the zoo models, every role in this process, then
    :func:`lada.runner.drive.drive` on an :class:`InProcessEngine`."""
    from lada.runner.drive import drive
    from lada.runner.roles import build_client, build_server, prepare_zoo_models
    from lada.runner.setup import load_run_data

    data = load_run_data(cfg, run_dir)
    prepare_zoo_models(cfg, data.world_cfg)
    clients = {
        k: build_client(cfg, data, k, run_dir / "clients" / f"client_{k}")
        for k in range(len(cfg.clients))
    }
    engine = InProcessEngine(
        clients, timeouts={k: c.timeout_s for k, c in enumerate(cfg.clients)}, faults=cfg.faults
    )
    return drive(cfg, run_dir, build_server(cfg, data), engine, last, data.domains, console)
