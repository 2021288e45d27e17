"""``FlowerTransport``: the round logic's :class:`Transport` over a Flower ``Grid``.

Each ``broadcast(round, task, {client: payload})`` becomes one ``query.<task>`` message per
client (``group_id`` = the round), pushed at once and polled until every client answered or its
time is up. Outcomes per client, as the in-process engine reports them:

- a reply                       -> the task's result payload
- a reply carrying an error     -> ``Failure("error", reason)`` (the ClientApp raised), or
                                   ``Failure("unreachable", ...)`` when Flower says the node,
                                   the message or the reply is unavailable
- no reply within the timeout   -> ``Failure("timeout", ...)``
- no node for the client        -> ``Failure("unreachable", ...)`` (nothing is sent)

Which node is which client: a node says so when asked (``query.lada_hello``, answered from its
node config; the simulation's ``partition-id``). Unknown nodes are asked whenever the node set
changes, so a restarted SuperNode rejoins at the next broadcast it is there for; with
``rejoin_wait_s`` the first broadcast of each round waits that long for clients without a node.

Bytes: the :class:`CommLog` counts ``len(encode(payload.to_record()))``, the size of the payload
in LaDa's own wire format, for every instruction sent (down) and every result received (up),
exactly as the in-process engine does, so both engines report comparable numbers. Flower's own
framing (protobuf, message metadata, hellos) is not counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.common.constant import ErrorCode

from lada.engines.flower import HELLO_ACTION
from lada.engines.flower.client_app import META
from lada.engines.flower.records import (
    payload_to_recorddict,
    recorddict_size,
    recorddict_to_payload,
)
from lada.federation.protocol import RESULTS, Payload, Task, WireError, encode
from lada.federation.transport import CommLog, Failure

log = logging.getLogger("lada.flower")

_UNREACHABLE = {
    ErrorCode.NODE_UNAVAILABLE,
    ErrorCode.MESSAGE_UNAVAILABLE,
    ErrorCode.REPLY_MESSAGE_UNAVAILABLE,
}
HELLO_TIMEOUT_S = 60.0
TTL_MARGIN_S = 5.0


def message_type(task: Task | str) -> str:
    return f"query.{task}"


class FlowerTransport:
    """Implements :class:`lada.federation.transport.Transport` on a Flower ``Grid``."""

    def __init__(
        self,
        grid: Any,
        num_clients: int,
        node_to_client: dict[int, int] | None = None,
        timeout_s: float | None = None,
        client_timeouts: dict[int, float | None] | None = None,
        fingerprints: dict[int, str] | None = None,
        pull_interval_s: float = 0.1,
        hello_timeout_s: float = HELLO_TIMEOUT_S,
        rejoin_wait_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        max_message_bytes: int | None = None,
        client_nodes: list[int] | None = None,
    ) -> None:
        """``max_message_bytes`` (``limits.max_message_bytes``): a larger reply is rejected
        before it is decoded. ``client_nodes`` (``flower.client_nodes``): client k's SuperNode
        id; a node is then accepted as client k only when its id is ``client_nodes[k]``
        (with the SuperLink's node authentication, that id is bound to the node's key)."""
        self.grid = grid
        self.num_clients = num_clients
        self.node_to_client: dict[int, int] = dict(node_to_client or {})
        self.timeout_s = timeout_s
        self.client_timeouts = client_timeouts or {}
        self.fingerprints = fingerprints or {}
        self.pull_interval_s = pull_interval_s
        self.hello_timeout_s = hello_timeout_s
        self.rejoin_wait_s = rejoin_wait_s
        self.max_message_bytes = max_message_bytes
        self.client_nodes = None if client_nodes is None else [int(n) for n in client_nodes]
        if self.client_nodes is not None and (
            len(self.client_nodes) != num_clients or len(set(self.client_nodes)) != num_clients
        ):
            raise ValueError(
                f"flower.client_nodes must name {num_clients} distinct SuperNode ids, one per "
                f"client, got {self.client_nodes}"
            )
        self._round: int | None = None  # the round of the last broadcast
        self.comm = CommLog()
        self._clock = clock
        self._hello_pending: dict[str, int] = {}  # message id -> node id
        self._hello_failed: set[int] = set()  # nodes that could not say who they are
        self._known_nodes: set[int] = set(self.node_to_client)

    # ---- nodes ------------------------------------------------------------------------

    def clients(self) -> list[int]:
        """All clients of the run: one with no node gets ``Failure("unreachable")``."""
        return list(range(self.num_clients))

    @property
    def client_to_node(self) -> dict[int, int]:
        return {k: n for n, k in self.node_to_client.items()}

    def missing(self) -> list[int]:
        mapped = set(self.node_to_client.values())
        return [k for k in range(self.num_clients) if k not in mapped]

    def refresh(self, wait_s: float | None = None) -> None:
        """Ask new nodes which client they are; forget nodes that left.

        Waits up to ``wait_s`` (default: the hello timeout) for the answers of new nodes.
        """
        nodes = set(self.grid.get_node_ids())
        for gone in set(self.node_to_client) - nodes:
            log.info("node %s (client %s) left", gone, self.node_to_client[gone])
            del self.node_to_client[gone]
        self._hello_failed &= nodes
        asking = set(self._hello_pending.values())
        new = sorted(nodes - set(self.node_to_client) - asking - self._hello_failed)
        if new:
            msgs = [
                Message(
                    _meta_only(),
                    dst_node_id=n,
                    message_type=message_type(HELLO_ACTION),
                    group_id="hello",
                    ttl=self.hello_timeout_s + TTL_MARGIN_S,
                )
                for n in new
            ]
            for msg, mid in zip(msgs, self.grid.push_messages(msgs), strict=False):
                self._hello_pending[str(mid)] = int(msg.metadata.dst_node_id)
        deadline = self._clock() + (self.hello_timeout_s if wait_s is None else wait_s)
        while self._hello_pending:
            for reply in self.grid.pull_messages(list(self._hello_pending)):
                node = self._hello_pending.pop(reply.metadata.reply_to_message_id, None)
                if node is None:
                    continue
                if reply.has_error() or META not in reply.content:
                    reason = reply.error.reason if reply.has_error() else "no client id"
                    log.warning("node %s did not say which client it is: %s", node, reason)
                    self._hello_failed.add(node)
                    continue
                k = reply.content[META].get("client-id")
                why = self._claim_refused(node, k)
                if why is not None:
                    log.warning("node %s says it is client %.40r: %s", node, k, why)
                    self._hello_failed.add(node)
                    continue
                assert isinstance(k, int)
                for other, c in list(self.node_to_client.items()):
                    if c == k and other != node:
                        log.warning("client %s moved from node %s to node %s", k, other, node)
                        del self.node_to_client[other]
                self.node_to_client[node] = k
                log.info("node %s is client %s", node, k)
            if not self._hello_pending or self._clock() >= deadline:
                break
            time.sleep(self.pull_interval_s)
        self._known_nodes = nodes

    def _claim_refused(self, node: int, k: Any) -> str | None:
        """Why node ``node`` cannot be client ``k`` (its hello's claim), or None."""
        if not isinstance(k, int) or isinstance(k, bool):
            return "not an integer client id"
        if not 0 <= k < self.num_clients:
            return "not a client of this run"
        if self.client_nodes is not None and self.client_nodes[k] != node:
            return f"refused: flower.client_nodes binds client {k} to node {self.client_nodes[k]}"
        return None

    def wait_for_clients(self, timeout_s: float) -> list[int]:
        """Wait until every client has a node (or ``timeout_s``); returns those still missing."""
        deadline = self._clock() + timeout_s
        while True:
            self.refresh(wait_s=max(0.0, min(self.hello_timeout_s, deadline - self._clock())))
            missing = self.missing()
            if not missing or self._clock() >= deadline:
                return missing
            time.sleep(max(self.pull_interval_s, 0.5))

    def _deadline(self, k: int) -> float | None:
        limits = [t for t in (self.timeout_s, self.client_timeouts.get(k)) if t is not None]
        return min(limits) if limits else None

    # ---- Transport --------------------------------------------------------------------

    def broadcast(
        self, round_idx: int, task: Task, instructions: dict[int, Payload]
    ) -> dict[int, Payload | Failure]:
        if round_idx != self._round:
            if self._round is not None and self.rejoin_wait_s > 0 and self.missing():
                self.wait_for_clients(self.rejoin_wait_s)  # a new round: give lost clients a chance
            self._round = round_idx
        nodes = set(self.grid.get_node_ids())
        if (
            nodes != self._known_nodes
            or self._hello_pending
            or any(k not in self.client_to_node for k in instructions)
        ):
            self.refresh(wait_s=None if nodes - self._known_nodes else 0.0)
        to_node = self.client_to_node
        replies: dict[int, Payload | Failure] = {}
        msgs: list[Message] = []
        clients: list[int] = []
        for k in sorted(instructions):
            node = to_node.get(k)
            if node is None:
                replies[k] = Failure("unreachable", f"no SuperNode is connected for client {k}")
                continue
            ins = instructions[k]
            self.comm.add(round_idx, task, "down", len(encode(ins.to_record())))
            content = payload_to_recorddict(ins)
            meta: dict[str, Any] = {"client-id": k}
            if k in self.fingerprints:
                meta["fingerprint"] = self.fingerprints[k]
            content[META] = ConfigRecord(meta)
            limit = self._deadline(k)
            msgs.append(
                Message(
                    content,
                    dst_node_id=node,
                    message_type=message_type(task),
                    group_id=str(round_idx),
                    ttl=None if limit is None else limit + TTL_MARGIN_S,
                )
            )
            clients.append(k)
        if not msgs:
            return replies
        t0 = self._clock()
        ids = [str(i) for i in self.grid.push_messages(msgs)]
        pending: dict[str, int] = {}
        for msg, k in zip(msgs, clients, strict=True):
            mid = msg.metadata.message_id
            if mid and mid in ids:
                pending[mid] = k
            else:
                replies[k] = Failure("unreachable", "the SuperLink did not accept the message")
        while pending:
            for reply in self.grid.pull_messages(list(pending)):
                k_or_none = pending.pop(reply.metadata.reply_to_message_id, None)
                if k_or_none is None:
                    continue
                replies[k_or_none] = self._result(round_idx, task, reply)
            now = self._clock()
            for mid, k in list(pending.items()):
                limit = self._deadline(k)
                if limit is not None and now - t0 > limit:
                    del pending[mid]
                    replies[k] = Failure(
                        "timeout", f"{task}: no reply within {limit:g}s (node {to_node[k]})"
                    )
            if pending:
                time.sleep(self.pull_interval_s)
        return {k: replies[k] for k in sorted(replies)}

    def _result(self, round_idx: int, task: Task, reply: Message) -> Payload | Failure:
        if reply.has_error():
            err = reply.error
            kind = "unreachable" if err.code in _UNREACHABLE else "error"
            return Failure(kind, f"{err.reason} (Flower error code {err.code})")
        size = recorddict_size(reply.content)
        if self.max_message_bytes is not None and size > self.max_message_bytes:
            return Failure(
                "rejected",
                f"{size} bytes exceed limits.max_message_bytes={self.max_message_bytes}",
            )
        try:
            res = recorddict_to_payload(RESULTS[task], reply.content)
        except WireError as e:  # a malformed reply is that client's failure, not ours
            return Failure("rejected", f"malformed {task} reply: {e}")
        except Exception as e:
            return Failure("error", f"malformed {task} reply: {type(e).__name__}: {e}")
        self.comm.add(round_idx, task, "up", len(encode(res.to_record())))
        return res


def _meta_only() -> RecordDict:
    return RecordDict({META: ConfigRecord({})})
