"""One LaDa round (spec §5), written against the Transport, Host and plug-in interfaces only.

1. local training     clients train their SLMs on private data (every host's own first step)
2. host step          the host's step after local training (FedCoLLM: FedAvg)
3. allocation         LaDa's filters (or a baseline, or all of P for the host alone) pick ids
4. exchange           the host's public transfer on the picks (paths, logits, ...)
5. learning           both learners: L_host + λ·L_CD
6. rewards            learner losses → rewards → filters retrained
7. evaluation         every SLM on its test set; the LLM on every client's test set

The round knows no concrete host: ``host`` is a :class:`lada.federation.host.Host` (chosen by
name through :mod:`lada.hosts`), ``plugin`` the :class:`lada.federation.plugin.LadaPlugin`.
"""

from __future__ import annotations

from lada.federation.host import Host, RoundContext
from lada.federation.plugin import LadaPlugin
from lada.federation.protocol import EvaluateIns, EvaluateRes, LocalTrainIns, LocalTrainRes, Task
from lada.federation.report import Phase, RoundReport, ok_replies
from lada.federation.server import ServerRole
from lada.federation.transport import Transport


def run_round(
    round_idx: int,
    server: ServerRole,
    transport: Transport,
    host: Host | None = None,
    plugin: LadaPlugin | None = None,
) -> RoundReport:
    """One round of ``host`` with ``plugin`` (default: the plain path host with LaDa)."""
    from lada.federation.guard import guarded

    host = host or Host()
    plugin = plugin or LadaPlugin()
    transport = guarded(transport, server, host)  # every reply checked against what was asked
    rnd = RoundContext(round_idx, server, transport, RoundReport(round_idx), transport.clients())
    local_training(rnd)
    host.after_local(rnd)
    for step in plugin.steps(host):
        if not rnd.alive:
            break
        picks = plugin.allocate(rnd, step, host.directions)
        exchanged = step.host.exchange(rnd, picks)
        learned = step.host.learn(rnd, picks, exchanged)
        plugin.reward(rnd, picks, learned)
        rnd.drop_missed()
    evaluation(rnd)
    return rnd.report


def local_training(rnd: RoundContext) -> None:
    """Every alive client trains its SLM on its private data; those that fail sit out."""
    with rnd.phase("local_train"):
        ins = {k: LocalTrainIns(rnd.round) for k in rnd.alive}
        trained: dict[int, LocalTrainRes] = rnd.broadcast(Task.LOCAL_TRAIN, ins)
        rnd.report.local = {k: {"mean_loss": r.mean_loss} for k, r in trained.items()}
        rnd.alive = sorted(trained)


def evaluation(rnd: RoundContext) -> None:
    """Every alive SLM on its private test set, the LLM on every client's test set."""
    with rnd.phase("evaluate"):
        evaluate_clients(rnd.report, rnd.transport, rnd.round, rnd.alive)
        rnd.report.llm_eval = rnd.server.evaluate(rnd.round)


def evaluate_clients(
    report: RoundReport, transport: Transport, round_idx: int, clients: list[int]
) -> None:
    """The SLMs' accuracies on their private test sets into ``report.slm_eval``."""
    replies = transport.broadcast(
        round_idx, Task.EVALUATE, {k: EvaluateIns(round_idx) for k in clients}
    )
    evals: dict[int, EvaluateRes] = ok_replies(report, Task.EVALUATE, replies)
    report.slm_eval = {
        k: {"accuracy": r.accuracy, "n": r.num_samples, "groups": r.groups, "correct": r.correct}
        for k, r in evals.items()
    }


__all__ = ["Phase", "RoundReport", "evaluate_clients", "run_round"]
