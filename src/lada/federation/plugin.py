"""LaDa as a plug-in of any host (spec §6): its three plug-in points, in one object.

1. **allocation**: which public ids each (SLM k, LLM) pair transfers, per direction: the
   learnability-aware filters (``allocation: lada``) or a baseline
   (:mod:`lada.federation.allocation`); the host alone transfers all of P;
2. **λ·L_CD**: the contrastive term joins the learner's loss (λ = ``distill.lambda_cd``); the
   host alone has λ = 0;
3. **rewards**: after the learners' step their losses on the filters' picks reward the filters.

``host_transfer: all`` (ours, logit hosts only) departs from point 1: the host's own exchange
runs on all of P without paths, exactly as alone, and LaDa's path step then runs on the picks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from lada.federation.guard import contain
from lada.federation.host import Host, Learned, Picks, RoundContext
from lada.federation.protocol import EmbedIns, EmbedRes, Task


@dataclass(frozen=True)
class ExchangeStep:
    """One exchange of a round: picks by ``allocation`` ("lada": the filters; else a
    baseline, "all" for all of P), then ``host``'s exchange and learning on them."""

    allocation: str
    host: Host
    with_paths: bool


@dataclass(frozen=True)
class LadaPlugin:
    """LaDa's plug-in points; ``enabled=False`` is the host alone (``plugin: none``)."""

    enabled: bool = True
    # lada | all | random | random_labelled | random_teachable | perplexity | ifd | min_ce
    allocation: str = "lada"
    count: int | None = None  # the baselines' count (None: filter.budget, else 10 % of P)
    host_transfer: str = "picks"  # picks | all (ours, logit hosts)
    oracle_diagnostic: bool = False  # ours: also record allocation=oracle's would-be picks
    # ours, a control: random_teachable picks as many as this run folder's did (None: budget)
    counts_from: str | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> LadaPlugin:
        return cls(
            enabled=cfg.plugin == "lada",
            allocation=cfg.allocation,
            count=cfg.allocation_count,
            host_transfer=cfg.host_transfer,
            oracle_diagnostic=cfg.oracle_diagnostic,
            counts_from=cfg.allocation_counts_from,
        )

    # ---- plug-in point 2: λ·L_CD ---------------------------------------------------------

    def distill_config(self, distill: Any) -> Any:
        """The learners' DistillConfig: as configured with LaDa; the host alone has no
        contrastive term (λ = 0)."""
        return distill if self.enabled else replace(distill, lambda_cd=0.0)

    def rehearses_after_local(self, distill: Any, host: Host) -> bool:
        """Whether clients end their local step with LaDa's private rehearsal
        (``distill.slm_replay_alone``, ours, fairness): in the host alone, exactly when the same
        host with LaDa would rehearse (its SLM step is the path step) and its own round would
        not (it has no exchange alone): the plain host."""
        return (
            not self.enabled
            and distill.slm_replay_alone
            and distill.slm_replay > 0
            and host.slm_learns_paths
            and not host.exchanges_alone
        )

    # ---- the round's exchange steps -----------------------------------------------------

    def steps(self, host: Host) -> list[ExchangeStep]:
        """The exchanges of a round, run in turn."""
        if not self.enabled:
            return [ExchangeStep("all", host, with_paths=False)] if host.exchanges_alone else []
        if self.host_transfer == "all":
            if not host.compares_logits:
                raise ValueError(
                    f"host_transfer='all' needs a host that compares logits, not {host.name!r}"
                )
            # the host's own transfer on all of P without paths, exactly as alone; then LaDa's
            # path step (the plain host's exchange) on the picks
            return [
                ExchangeStep("all", host, with_paths=False),
                ExchangeStep(self.allocation, Host(), with_paths=True),
            ]
        return [ExchangeStep(self.allocation, host, with_paths=True)]

    # ---- plug-in point 1: allocation ----------------------------------------------------

    def allocate(self, rnd: RoundContext, step: ExchangeStep, directions: tuple[str, ...]) -> Picks:
        """The picks of every alive pair for ``step`` (the report notes them)."""
        diagnose = self.oracle_diagnostic and step.with_paths and step.allocation != "oracle"
        t = None  # the teachable candidates, found once a step for all who rank them
        if diagnose or step.allocation in ("lada", "random_teachable", "oracle"):
            with rnd.phase("allocate"):
                t = self.teachable(rnd, step.host, directions)
        if step.allocation == "lada":
            picks = self._filter_picks(rnd, t, directions)
        elif step.allocation == "random_teachable":
            picks = self._random_teachable_picks(rnd, t, directions)
        else:
            picks = self._baseline_picks(rnd, step.allocation, t, directions)
        picks.with_paths = step.with_paths
        if diagnose:
            self._oracle_diagnostic(rnd, t, directions)
        return picks

    def _count(self, server: Any) -> int:
        """Picks per pair, direction and round for every allocation but LaDa's filters."""
        from lada.federation.allocation import allocation_count

        f = server.settings.filter
        return allocation_count(len(server.public_ids), self.count, f.budget, f.cold_start_fraction)

    def _oracle_diagnostic(self, rnd: RoundContext, t: Any, directions: tuple[str, ...]) -> None:
        """allocation=oracle's would-be picks into the report; nothing acts on them (the
        clients' and server's generation reseeds per task, so the round is unchanged)."""
        from lada.federation.oracle import oracle_round

        server = rnd.server
        with rnd.phase("oracle"):
            picks, _, _ = oracle_round(
                rnd.round,
                server,
                rnd.transport,
                rnd.alive,
                directions,
                self._count(server),
                rnd.ok,
                t.masks,
            )
        ids = server.public_ids
        for k, per in picks.items():
            if per:
                rnd.report.oracle_selected[k] = {d: [ids[i] for i in per[d]] for d in per}

    @staticmethod
    def teachable(rnd: RoundContext, host: Host, directions: tuple[str, ...]) -> Any:
        """The candidates of every alive pair (``filter.mask``, lada.federation.teachable);
        the report notes, per client and direction, how many samples of P were ``masked``."""
        mask = rnd.server.settings.filter.mask
        t = host.teachable(rnd, directions, generate=mask == "teachable")
        for k in t.masks:
            rnd.report.masked[k] = t.masked(k)
        return t

    def _filter_picks(self, rnd: RoundContext, t: Any, directions: tuple[str, ...]) -> Picks:
        server, rep = rnd.server, rnd.report
        with rnd.phase("allocate"):
            server.public_features(rnd.round)
            ins = {k: EmbedIns(rnd.round, server.public_ids) for k in rnd.alive if k in t.masks}
            embeds: dict[int, EmbedRes] = rnd.broadcast(Task.EMBED, ins)
            alloc = {}
            for k, r in embeds.items():  # one client's features cannot stop the round
                choose = partial(server.allocate, rnd.round, k, r.features, t.masks[k])
                a = contain(rep, k, str(Task.EMBED), choose)
                if a is not None:
                    alloc[k] = a
            for a in alloc.values():
                for d in set(a.ids) - set(directions):  # a one-way host: no picks the other way
                    a.ids[d], a.mode[d] = [], "unused"
            for k, a in alloc.items():
                rep.selected[k] = a.ids
                rep.filter_mode[k] = a.mode
        return Picks(
            alloc,
            directions,
            rewards=True,
            llm_paths=t.llm_paths,
            slm_paths=t.slm_paths,
            server_slm_paths=t.server_slm_paths,
        )

    def _random_teachable_picks(
        self, rnd: RoundContext, t: Any, directions: tuple[str, ...]
    ) -> Picks:
        """``random_teachable`` (ours, a control): ``count`` picks uniformly at random among
        the candidates LaDa's filters see (the same mask), on both sides, with LaDa's budget;
        with ``counts_from``, as many per learner and direction as that run picked this round
        (count-matched)."""
        from lada.federation.allocation import matched_counts, pick_random_among
        from lada.federation.server import Allocation
        from lada.utils.seeding import derive_seed

        server, rep = rnd.server, rnd.report
        n = self._count(server)
        matched = matched_counts(self.counts_from, rnd.round) if self.counts_from else None
        with rnd.phase("allocate"):
            alloc: dict[int, Allocation] = {}
            for k, masks in t.masks.items():
                a = alloc[k] = Allocation()
                for d in directions:
                    seed = derive_seed(server.settings.seed, "random", rnd.round, k, d) % 2**32
                    m = n if matched is None else matched.get(k, {}).get(d, 0)
                    idx = pick_random_among(masks[d], m, seed)
                    a.ids[d] = [server.public_ids[i] for i in idx]
                    a.mode[d] = "random_teachable" if matched is None else "random_matched"
                rep.selected[k] = a.ids
                rep.filter_mode[k] = a.mode
        return Picks(
            alloc,
            directions,
            rewards=False,
            llm_paths=t.llm_paths,
            slm_paths=t.slm_paths,
            server_slm_paths=t.server_slm_paths,
        )

    def _baseline_picks(
        self, rnd: RoundContext, strategy: str, t: Any, directions: tuple[str, ...]
    ) -> Picks:
        from lada.federation.allocation import baseline_allocate

        server, rep = rnd.server, rnd.report
        # the oracle ranks the same candidates as LaDa's filters (the teachable mask)
        mask = t.masks if strategy == "oracle" else None
        with rnd.phase("allocate"):
            base = baseline_allocate(
                rnd.round,
                strategy,
                server,
                rnd.transport,
                rnd.alive,
                directions,
                self._count(server),
                rnd.ok,
                mask,
            )
            for k, a in base.alloc.items():
                rep.selected[k] = a.ids
                rep.filter_mode[k] = a.mode
        return Picks(
            base.alloc,
            directions,
            rewards=False,
            llm_paths=base.llm_paths,
            slm_paths=base.slm_paths,
        )

    # ---- plug-in point 3: rewards -------------------------------------------------------

    def reward(self, rnd: RoundContext, picks: Picks, learned: Learned) -> None:
        """Rewards from the learners' losses on the filters' picks (spec §5.5; not for a
        baseline's picks), then the losses into the report; every pair's L_CD pair counts
        (``slm_pairs`` / ``llm_pairs``) are reported, 0 where it learnt nothing."""
        with rnd.phase("rewards"):
            if picks.rewards:
                for k, side, losses in learned.losses:
                    out = contain(
                        rnd.report,
                        k,
                        f"rewards {side}",
                        partial(rnd.server.reward, k, side, losses),
                    )
                    if out is not None:
                        rnd.report.rewards.setdefault(k, {})[side] = out
            learned.record(rnd.report)
            for k in picks.alloc:
                for d in picks.directions:
                    key = "slm_pairs" if d == "S" else "llm_pairs"
                    rnd.report.distill.setdefault(k, {}).setdefault(key, 0)


__all__ = ["ExchangeStep", "LadaPlugin"]
