"""Host steps the round logic calls besides the LaDa exchange (FedCoLLM's FedAvg)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lada.federation.protocol import GetWeightsIns, SetWeightsIns, Task, WeightsRes
from lada.hosts.fedavg import FlatState, fedavg


def fedavg_step(
    round_idx: int,
    server: Any,
    transport: Any,
    alive: list[int],
    ok: Callable[[Task, dict[int, Any]], dict[int, Any]],
) -> FlatState | None:
    """Clients upload their trainable SLM weights, the server averages them (weighted by
    private sample counts) and sends the average back to every client that uploaded."""
    replies = transport.broadcast(
        round_idx, Task.GET_WEIGHTS, {k: GetWeightsIns(round_idx) for k in alive}
    )
    got: dict[int, WeightsRes] = ok(Task.GET_WEIGHTS, replies)
    if not got:
        return None
    states = [FlatState(list(r.names), json.loads(r.shapes), r.flat) for r in got.values()]
    avg = fedavg(states, [max(r.num_samples, 1) for r in got.values()])
    ins = {k: SetWeightsIns(round_idx, avg.names, avg.shapes_json, avg.flat) for k in got}
    ok(Task.SET_WEIGHTS, transport.broadcast(round_idx, Task.SET_WEIGHTS, ins))
    return avg
