"""One LaDa round (spec §5), written against the Transport interface only.

1. host step        clients train their SLMs on private data
2. allocation       F_k^S and F_k^L pick public ids (round 1: k-means cold start)
3. paths            SLM k writes paths for F_k^L's picks; the LLM for everything picked
4. distillation     client k: L_host + λ·L_CD^S; server: L_host + λ·L_CD^L
5. rewards          learner losses → rewards → filters retrained
6. evaluation       every SLM on its test set; the LLM on every client's test set
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lada.federation.protocol import (
    DistillIns,
    DistillRes,
    EmbedIns,
    EmbedRes,
    EvaluateIns,
    EvaluateRes,
    GenerateIns,
    LocalTrainIns,
    LocalTrainRes,
    PathsRes,
    Task,
)
from lada.federation.server import LearnerLosses, ServerRole
from lada.federation.transport import Failure, Transport


@dataclass
class RoundReport:
    round: int
    seconds: dict[str, float] = field(default_factory=dict)
    missed: dict[int, str] = field(default_factory=dict)  # client -> "task: reason"
    rejected: dict[int, str] = field(default_factory=dict)  # ... replies that failed validation
    local: dict[int, dict[str, float]] = field(default_factory=dict)
    selected: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    filter_mode: dict[int, dict[str, str]] = field(default_factory=dict)
    rewards: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    distill: dict[int, dict[str, float]] = field(default_factory=dict)
    slm_eval: dict[int, dict[str, Any]] = field(default_factory=dict)
    llm_eval: dict[int, dict[str, Any]] = field(default_factory=dict)
    # per learner (client k, direction "S"/"L"): the picks' losses, for the bench's filter lift
    learning: dict[int, dict[str, dict[str, list]]] = field(default_factory=dict)


class _Phase:
    def __init__(self, report: RoundReport, name: str) -> None:
        self.report, self.name = report, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        # a phase may run twice in a round (host_transfer=all): its times add up
        spent = time.perf_counter() - self.t0
        self.report.seconds[self.name] = self.report.seconds.get(self.name, 0.0) + spent


def _ok(report: RoundReport, task: Task, replies: dict[int, Any]) -> dict[int, Any]:
    good = {}
    for k, r in replies.items():
        if isinstance(r, Failure):
            report.missed.setdefault(k, f"{task}: {r.kind}: {r.message}")
            if r.kind == "rejected":  # lada.federation.guard
                report.rejected.setdefault(k, f"{task}: {r.message}")
        else:
            good[k] = r
    return good


# the names host steps (lada.hosts) use
Phase = _Phase
ok_replies = _ok


@dataclass
class HostStep:
    """Which host's exchange runs on the picks (lada.hosts): ``with_paths`` (plugin lada) says
    whether reasoning paths, L_CD and rewards join a logit host's step; ``averaged`` is
    FedCoLLM's FedAvg result (:class:`lada.hosts.fedavg.FlatState`)."""

    name: str = "sft"
    with_paths: bool = True
    averaged: Any = None


def run_round(
    round_idx: int,
    server: ServerRole,
    transport: Transport,
    plugin: str = "lada",
    host: str = "sft",
    allocation: str = "lada",
    allocation_count: int | None = None,
    host_transfer: str = "picks",
) -> RoundReport:
    """One round. ``host`` (lada.hosts) chooses the host's own steps and transfer directions;
    ``allocation`` (lada.federation.allocation) the picks when ``plugin`` is "lada"; the host
    alone (plugin "none") transfers all of P in its directions. ``host_transfer="all"`` (a
    logit host with plugin "lada"): the host's own transfer on all of P, as alone, then LaDa's
    path step on the picks."""
    from lada.federation.guard import guarded
    from lada.hosts import LOGIT_HOSTS, host_directions, host_exchanges

    transport = guarded(transport, server)  # every reply checked against what was asked
    rep = RoundReport(round=round_idx)
    alive = transport.clients()

    with _Phase(rep, "local_train"):
        replies = transport.broadcast(
            round_idx, Task.LOCAL_TRAIN, {k: LocalTrainIns(round_idx) for k in alive}
        )
        trained: dict[int, LocalTrainRes] = _ok(rep, Task.LOCAL_TRAIN, replies)
        rep.local = {k: {"mean_loss": r.mean_loss} for k, r in trained.items()}
        alive = sorted(trained)

    avg = None
    if host == "fedcollm" and alive:
        from lada.hosts.round_steps import fedavg_step

        with _Phase(rep, "fedavg"):
            avg = fedavg_step(round_idx, server, transport, alive, lambda t, r: _ok(rep, t, r))
        alive = [k for k in alive if k not in rep.missed]
        if avg is None:
            alive = []  # nothing averaged: no server-side distillation to send back

    # the public exchange: (allocation, host step) pairs run in turn
    steps: list[tuple[str, HostStep]] = []
    if plugin == "lada" and host_transfer == "all":
        if host not in LOGIT_HOSTS:
            raise ValueError(
                f"host_transfer='all' needs a logit host ({LOGIT_HOSTS}), not {host!r}"
            )
        # the host's own transfer on all of P without paths, exactly as alone; then LaDa's path
        # step on the picks
        steps = [
            ("all", HostStep(host, with_paths=False, averaged=avg)),
            (allocation, HostStep("paths")),
        ]
    elif host_exchanges(host, plugin):
        lada = plugin == "lada"
        steps = [(allocation if lada else "all", HostStep(host, with_paths=lada, averaged=avg))]
    for strategy, step in steps:
        if not alive:
            break
        _lada_exchange(
            round_idx,
            server,
            transport,
            alive,
            rep,
            strategy=strategy,
            directions=host_directions(host),
            count=allocation_count,
            host=step,
        )
        # a client that failed any task sits out the rest of the round (keeps its last state)
        alive = [k for k in alive if k not in rep.missed]

    with _Phase(rep, "evaluate"):
        replies = transport.broadcast(
            round_idx, Task.EVALUATE, {k: EvaluateIns(round_idx) for k in alive}
        )
        evals: dict[int, EvaluateRes] = _ok(rep, Task.EVALUATE, replies)
        rep.slm_eval = {
            k: {
                "accuracy": r.accuracy,
                "n": r.num_samples,
                "groups": r.groups,
                "correct": r.correct,
            }
            for k, r in evals.items()
        }
        rep.llm_eval = server.evaluate(round_idx)
    return rep


def _lada_exchange(
    round_idx: int,
    server: ServerRole,
    transport: Transport,
    alive: list[int],
    rep: RoundReport,
    strategy: str = "lada",
    directions: tuple[str, ...] = ("S", "L"),
    count: int | None = None,
    host: HostStep | None = None,
) -> None:
    host = host or HostStep()
    if strategy != "lada":
        _baseline_exchange(
            round_idx, server, transport, alive, rep, strategy, directions, count, host
        )
        return
    with _Phase(rep, "allocate"):
        server.public_features(round_idx)
        replies = transport.broadcast(
            round_idx, Task.EMBED, {k: EmbedIns(round_idx, server.public_ids) for k in alive}
        )
        embeds: dict[int, EmbedRes] = _ok(rep, Task.EMBED, replies)
        alloc = {k: server.allocate(round_idx, k, r.features) for k, r in embeds.items()}
        for a in alloc.values():
            for d in set(a.ids) - set(directions):  # a one-way host: no picks the other way
                a.ids[d], a.mode[d] = [], "unused"
        for k, a in alloc.items():
            rep.selected[k] = a.ids
            rep.filter_mode[k] = a.mode

    _host_transfer(round_idx, server, transport, rep, alloc, directions, True, host)


def _baseline_exchange(
    round_idx: int,
    server: ServerRole,
    transport: Transport,
    alive: list[int],
    rep: RoundReport,
    strategy: str,
    directions: tuple[str, ...],
    count: int | None,
    host: HostStep,
) -> None:
    from lada.federation.allocation import allocation_count, baseline_allocate

    f = server.settings.filter
    n = allocation_count(len(server.public_ids), count, f.budget, f.cold_start_fraction)
    with _Phase(rep, "allocate"):
        base = baseline_allocate(
            round_idx,
            strategy,
            server,
            transport,
            alive,
            directions,
            n,
            lambda task, replies: _ok(rep, task, replies),
        )
        for k, a in base.alloc.items():
            rep.selected[k] = a.ids
            rep.filter_mode[k] = a.mode
    _host_transfer(
        round_idx,
        server,
        transport,
        rep,
        base.alloc,
        directions,
        False,
        host,
        llm_paths=base.llm_paths,
        slm_paths=base.slm_paths,
    )


def _host_transfer(
    round_idx: int,
    server: ServerRole,
    transport: Transport,
    rep: RoundReport,
    alloc: dict[int, Any],
    directions: tuple[str, ...],
    rewards: bool,
    host: HostStep,
    llm_paths: dict[str, str] | None = None,
    slm_paths: dict[int, PathsRes] | None = None,
) -> None:
    """The host's public exchange on the picks: FedMKT's logits (lada.hosts.fedmkt), FedCoLLM's
    server-side distillation (lada.hosts.fedcollm), else the path exchange."""
    if host.name == "fedmkt":
        from lada.hosts import fedmkt

        fedmkt.transfer(
            round_idx,
            server,
            transport,
            rep,
            alloc,
            directions,
            rewards,
            host.with_paths,
            llm_paths,
            slm_paths,
        )
    elif host.name == "fedcollm":
        from lada.hosts import fedcollm

        fedcollm.transfer(
            round_idx,
            server,
            transport,
            rep,
            alloc,
            directions,
            rewards,
            host.with_paths,
            host.averaged,
            llm_paths,
        )
    else:
        _transfer(
            round_idx,
            server,
            transport,
            rep,
            alloc,
            directions,
            rewards,
            llm_paths=llm_paths,
            slm_paths=slm_paths,
        )


def exchange_paths(
    round_idx: int,
    server: ServerRole,
    transport: Transport,
    rep: RoundReport,
    alloc: dict[int, Any],
    directions: tuple[str, ...],
    llm_paths: dict[str, str] | None = None,
    slm_paths: dict[int, PathsRes] | None = None,
) -> tuple[dict[int, PathsRes], dict[str, str]]:
    """Reasoning paths for the picks: SLM k's for its LLM-side picks (reused when given), the
    LLM's for every pick. Returns (SLM paths of the clients that answered, LLM paths by id)."""
    with _Phase(rep, "paths"):
        have = dict(slm_paths or {})
        slm_paths = {}
        if "L" in directions:
            for k, r in have.items():
                if k in alloc:
                    pos = {pid: j for j, pid in enumerate(r.ids)}
                    ids = alloc[k].ids["L"]
                    slm_paths[k] = PathsRes(ids=list(ids), paths=[r.paths[pos[i]] for i in ids])
            ask = {k: GenerateIns(round_idx, a.ids["L"]) for k, a in alloc.items() if k not in have}
            if ask:
                replies = transport.broadcast(round_idx, Task.GENERATE, ask)
                slm_paths.update(_ok(rep, Task.GENERATE, replies))
        else:
            slm_paths = {k: PathsRes(ids=[], paths=[]) for k in alloc}
        known = dict(llm_paths or {})
        wanted = sorted({i for a in alloc.values() for d in directions for i in a.ids[d]})
        missing = [i for i in wanted if i not in known]
        known.update(server.generate(round_idx, missing))
    return slm_paths, known


def _pick_losses(losses: LearnerLosses) -> dict[str, list]:
    """A learner's losses on its picks as JSON-able lists (RoundReport.learning)."""
    return {
        "ids": list(losses.ids),
        "loss_before": [float(x) for x in losses.loss_before],
        "loss_after": [float(x) for x in losses.loss_after],
        "margin": [float(x) for x in losses.margin],
        # 1: the pick entered the learner's loss (only those are rewarded; issue 12)
        "trained": [1] * len(losses.ids)
        if losses.trained is None
        else [int(x) for x in np.asarray(losses.trained).astype(bool)],
    }


def record_learning(
    server: ServerRole,
    rep: RoundReport,
    distilled: dict[int, DistillRes],
    llm_losses: dict[int, LearnerLosses],
    rewards: bool,
) -> None:
    """Both learners' losses into the report and, for LaDa's filters, rewards (spec §5.5)."""
    with _Phase(rep, "rewards"):
        for k, r in distilled.items():
            losses = LearnerLosses(
                list(r.ids),
                r.loss_before,
                r.loss_after,
                r.margin,
                trained=r.trained if len(r.trained) else None,
            )
            rep.learning.setdefault(k, {})["S"] = _pick_losses(losses)
            if rewards:
                rep.rewards.setdefault(k, {})["S"] = server.reward(k, "S", losses)
            rep.distill.setdefault(k, {}).update(
                slm_loss_before=float(np.mean(r.loss_before)) if len(r.ids) else float("nan"),
                slm_loss_after=float(np.mean(r.loss_after)) if len(r.ids) else float("nan"),
                slm_pairs=r.num_pairs,
            )
        for k, losses in llm_losses.items():
            rep.learning.setdefault(k, {})["L"] = _pick_losses(losses)
            if rewards:
                rep.rewards.setdefault(k, {})["L"] = server.reward(k, "L", losses)
            rep.distill.setdefault(k, {}).update(
                llm_loss_before=float(np.mean(losses.loss_before))
                if len(losses.ids)
                else float("nan"),
                llm_loss_after=float(np.mean(losses.loss_after))
                if len(losses.ids)
                else float("nan"),
            )


def _transfer(
    round_idx: int,
    server: ServerRole,
    transport: Transport,
    rep: RoundReport,
    alloc: dict[int, Any],
    directions: tuple[str, ...],
    rewards: bool,
    llm_paths: dict[str, str] | None = None,
    slm_paths: dict[int, PathsRes] | None = None,
) -> None:
    """Paths, both learners' steps and (LaDa filters only) rewards for given picks."""
    slm_paths, llm_paths = exchange_paths(
        round_idx, server, transport, rep, alloc, directions, llm_paths, slm_paths
    )

    with _Phase(rep, "distill_slm"):
        replies = transport.broadcast(
            round_idx,
            Task.DISTILL,
            {
                k: DistillIns(round_idx, a.ids["S"], [llm_paths[i] for i in a.ids["S"]])
                for k, a in alloc.items()
                if k in slm_paths and "S" in directions
            },
        )
        distilled: dict[int, DistillRes] = _ok(rep, Task.DISTILL, replies)

    with _Phase(rep, "distill_llm"):
        teach = {k: (r.ids, r.paths) for k, r in slm_paths.items()}
        llm_losses = server.learn(round_idx, teach, llm_paths) if "L" in directions else {}

    record_learning(server, rep, distilled, llm_losses, rewards)
