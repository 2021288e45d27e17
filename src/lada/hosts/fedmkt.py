"""FedMKT (Fan et al., COLING 2025) as a host framework (spec §6).

Each round, after the clients' SFT on private data (the host's local step):

1. both sides compute, on the gold texts (prompt + target) of public samples, their top-k
   logits per target token (k = ``hosts.fedmkt.top_k``, FedMKT's 128, clipped to the vocabulary)
   and a per-sample CE (mean token NLL); client k uploads its top-k for the ids of the LLM-side
   direction (task ``logits``), the server sends the LLM's top-k for client k's SLM-side ids
   with the learner step (task ``distill_logits``). Both sides compute their logits before
   either learns (mutual distillation on one snapshot).
2. Selective mutual distillation, FedMKT's min-CE rule per sample: a learner distils a sample
   only from a teacher whose CE on it is lower than its own; the LLM picks per sample the SLM
   with the lowest CE among those that sent logits for it (:func:`learn_from_logits`).
3. Loss = ``lm_weight``·LM + ``distill_weight``·distill (0.9 / 0.1), LM = NLL of
   the gold target, distill = :func:`lada.train.logit_distill.topk_distill_loss`.

Logits are only comparable under one tokenizer: every top-k carries a vocabulary fingerprint,
and the server stops the run with :class:`lada.train.logit_distill.VocabularyMismatchError` when
a client's differs from the LLM's (clients check the LLM's too). FedMKT's token alignment across
tokenizers is not implemented.

``plugin: none`` is FedMKT alone (all of P both ways, no paths). With ``plugin: lada`` LaDa enters
only through the spec's plug-in points: (1) each direction's logit transfer is restricted to the
allocation's picks, (2) the reasoning paths are exchanged as in the plain host and λ·L_CD on
(teacher path, own path) is added to the learner's loss, (3) rewards from the learner's losses
on its picks (loss on the teacher's path before/after, margin) update the filters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from lada.data.sample import Sample
from lada.federation.client import trained_mask
from lada.federation.host import Host, Learned, Picks, RoundContext, bind_handlers
from lada.federation.paths import (
    Paths,
    attach_teacher_paths,
    exchange_paths,
    learned_from_replies,
)
from lada.federation.protocol import (
    LogitDistillIns,
    LogitDistillRes,
    LogitsIns,
    LogitsRes,
    Payload,
    Task,
)
from lada.federation.server import LearnerLosses
from lada.hosts.fedmkt_config import FedMKTConfig
from lada.hosts.registry import register_host
from lada.hosts.vocabulary import check_shared_vocabulary
from lada.train.distill import DistillOutcome, LogitHook, learn_from_paths
from lada.train.logit_distill import TopKLogits, check_same_vocab, min_ce_teacher, topk_on_gold
from lada.train.loop import OptimConfig
from lada.utils.seeding import derive_seed, seed_everything

Selection = Literal["min_ce", "all"]


@dataclass(frozen=True)
class Learner:
    """A model that learns: its tokenizer, its name (messages) and vocabulary fingerprint."""

    model: Any
    tokenizer: Any
    name: str
    vocab: str


@dataclass(frozen=True)
class LogitLoss:
    """lm_weight·LM + kd_weight·KL, and which samples a teacher's logits teach."""

    lm_weight: float
    kd_weight: float
    selection: Selection = "min_ce"  # min_ce: only where the teacher's CE is lower (FedMKT)

    @classmethod
    def fedmkt(cls, settings: FedMKTConfig | None = None) -> LogitLoss:
        """FedMKT's loss with its settings (``hosts.fedmkt``; None: the paper's)."""
        s = settings or FedMKTConfig()
        return cls(s.lm_weight, s.distill_weight, "min_ce")


def learn_from_logits(
    learner: Learner,
    samples: Sequence[Sample],
    teachers: Mapping[int, TopKLogits],
    cfg: Any,  # lada.config.schema.DistillConfig
    optim: OptimConfig,
    paths: tuple[Sequence[str], Sequence[str] | None] | None = None,
    loss: LogitLoss | None = None,
) -> tuple[DistillOutcome, int]:
    """One learner's logit-distillation step over ``samples`` (items; a sample may be listed
    once per teacher path, it is then trained by LM and distillation once, by L_CD per item).

    ``paths``: (teacher paths, the learner's own paths or None) per item, for λ·L_CD and the
    reward (None: the host alone, no paths). The teacher of each sample: among ``teachers``
    holding its id, the lowest CE; with ``selection="min_ce"`` (FedMKT) only when that CE is
    lower than the learner's own CE on the sample's gold target, measured before the step.
    ``loss`` defaults to FedMKT's with the paper's weights (:meth:`LogitLoss.fedmkt`).
    Raises :class:`~lada.train.logit_distill.VocabularyMismatchError` for a teacher of another
    vocabulary. Returns the outcome of :func:`lada.train.distill.learn_from_paths` and the number
    of samples distilled."""
    from lada.train.logprobs import score_texts

    loss = loss or LogitLoss.fedmkt()
    for t in teachers.values():
        check_same_vocab(learner.name, learner.vocab, t.model, t.vocab)
    first: dict[str, int] = {}
    for i, s in enumerate(samples):
        first.setdefault(s.id, i)
    unique = [samples[i] for i in first.values()]
    own_ce = score_texts(
        learner.model,
        learner.tokenizer,
        [s.prompt() for s in unique],
        [s.target() for s in unique],
        max_length=optim.max_length,
    )["mean_nll"]
    keys = sorted(teachers)
    pos = {k: teachers[k].by_id() for k in keys}
    teacher_ce = np.array(
        [
            [teachers[k].ce[pos[k][s.id]] if s.id in pos[k] else np.nan for s in unique]
            for k in keys
        ],
        dtype=np.float64,
    ).reshape(len(keys), len(unique))
    if loss.selection == "min_ce":
        chosen = min_ce_teacher(own_ce, teacher_ce)
    elif loss.selection == "all":
        chosen = min_ce_teacher(np.full(len(unique), np.inf), teacher_ce)
    else:
        raise ValueError(f"unknown selection {loss.selection!r} (min_ce | all)")
    per_sample: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for s, c in zip(unique, chosen, strict=True):
        per_sample[s.id] = None if c < 0 else teachers[keys[c]].sample(pos[keys[c]][s.id])
    is_first = [first[s.id] == i for i, s in enumerate(samples)]
    hook = LogitHook(
        teachers=[per_sample[s.id] if f else None for s, f in zip(samples, is_first, strict=True)],
        lm=is_first,
        lm_weight=loss.lm_weight,
        kd_weight=loss.kd_weight,
        student=cfg.kd_student,
    )
    teacher_paths, own_paths = paths if paths is not None else (None, None)
    out = learn_from_paths(
        learner.model,
        learner.tokenizer,
        samples,
        teacher_paths,
        own_paths,
        cfg,
        optim,
        logits=hook,
    )
    return out, int((chosen >= 0).sum())


def topk_from_payload(r: LogitsRes | LogitDistillIns) -> TopKLogits:
    return TopKLogits(list(r.ids), r.lengths, r.indices, r.values, r.ce, r.vocab, r.model)


def server_learner(server: Any) -> Learner:
    return Learner(server.model, server.tokenizer, server.model_name, server.vocab())


# ---- the server side -----------------------------------------------------------------------


@dataclass
class LogitExchange:
    """What FedMKT's exchange holds for the learners: the clients' uploads and the LLM's top-k
    on the SLM-side picks, and LaDa's paths (empty without paths)."""

    picks: Picks
    uploads: dict[int, LogitsRes]
    llm_top: TopKLogits | None
    paths: Paths


def llm_learns_logits(
    rnd: RoundContext,
    logits: dict[int, TopKLogits],
    teacher: dict[int, tuple[list[str], list[str]]] | None,
    own_paths: dict[str, str],
    loss: LogitLoss | None = None,
) -> tuple[dict[int, LearnerLosses], int]:
    """FedMKT's LLM step: LM + distillation from the SLMs' top-k (``logits[k]``; per sample
    the lowest-CE SLM, if lower than the LLM's), + λ·L_CD on the SLMs' paths with LaDa
    (``teacher``; None: the host alone, no paths). Returns each client's LearnerLosses on its
    ids and the number of samples distilled. ``loss``: FedMKT's (the host's settings)."""
    server = rnd.server
    if teacher is not None:
        items = [
            (k, pid, path)
            for k, (ids, paths) in sorted(teacher.items())
            for pid, path in zip(ids, paths, strict=True)
        ]
    else:
        wanted = {pid for t in logits.values() for pid in t.ids}
        items = [(-1, pid, "") for pid in server.public_ids if pid in wanted]
    if not items:
        return {}, 0
    seed = derive_seed(server.settings.seed, "server", rnd.round, "distill")
    seed_everything(seed)
    d = server.settings.distill
    out, n_kd = learn_from_logits(
        server_learner(server),
        [server.by_id[pid] for _, pid, _ in items],
        logits,
        d,
        replace(d.llm_optim, seed=seed),
        paths=(
            ([path for _, _, path in items], [own_paths[pid] for _, pid, _ in items])
            if teacher is not None
            else None
        ),
        loss=loss,
    )
    row = {pid: j for j, (_, pid, _) in enumerate(items)}
    result: dict[int, LearnerLosses] = {}
    for k, t in logits.items():
        if teacher is not None:
            rows = [j for j, (kk, _, _) in enumerate(items) if kk == k]
        else:
            rows = [row[pid] for pid in t.ids]
        result[k] = LearnerLosses.rows(out, [items[j][1] for j in rows], rows)
    return result, n_kd


@register_host
class FedMKTHost(Host):
    """FedMKT: selective mutual distillation of top-k logits on P's gold texts (module doc)."""

    name = "fedmkt"
    compares_logits = True
    slm_learns_paths = False  # its own logit step (no path step, no private rehearsal)
    transfers_gold = True  # logits on P's gold texts: unlabelled samples are no candidates
    settings_class = FedMKTConfig  # hosts.fedmkt
    settings: FedMKTConfig

    def check(self, cfg: Any) -> None:
        check_shared_vocabulary(cfg)

    def exchange(self, rnd: RoundContext, picks: Picks) -> LogitExchange:
        """LaDa's paths (with paths), then the clients' top-k uploads for their LLM-side picks
        and the LLM's top-k for the SLM-side picks, from one snapshot."""
        from lada.hosts.gold import labelled_only

        server, directions = rnd.server, picks.directions
        picks = replace(
            picks, alloc=labelled_only(server, picks.alloc, rnd.report)
        )  # gold text only
        paths = Paths({}, {})
        if picks.with_paths:
            paths = exchange_paths(rnd, picks)
            picks = replace(picks, alloc={k: a for k, a in picks.alloc.items() if k in paths.slm})
        alloc = picks.alloc
        top_k = self.settings.top_k
        with rnd.phase("logits"):
            # every client answers (with no ids in a one-way host): its vocabulary is checked here
            ask = {
                k: LogitsIns(rnd.round, list(a.ids["L"]) if "L" in directions else [], top_k)
                for k, a in alloc.items()
            }
            got: dict[int, LogitsRes] = rnd.broadcast(Task.LOGITS, ask)
            for r in got.values():
                check_same_vocab(server.model_name, server.vocab(), r.model, r.vocab)
            s_ids = [i for i in server.public_ids if any(i in alloc[k].ids["S"] for k in got)]
            llm_top = None
            if "S" in directions:
                d = server.settings.distill
                llm_top = topk_on_gold(
                    server.model,
                    server.tokenizer,
                    [server.by_id[i] for i in s_ids],
                    top_k,
                    d.llm_optim.max_length,
                    server.model_name,
                    vocab=server.vocab(),
                )
        return LogitExchange(picks, got, llm_top, paths)

    def learn(self, rnd: RoundContext, picks: Picks, exchanged: LogitExchange) -> Learned:
        """Each SLM learns from the LLM's top-k (task ``distill_logits``), the LLM from the
        SLMs' (:func:`llm_learns_logits`); with paths, λ·L_CD joins both."""
        x = exchanged
        alloc, directions, got, with_paths = (
            x.picks.alloc,
            picks.directions,
            x.uploads,
            picks.with_paths,
        )
        distilled: dict[int, LogitDistillRes] = {}
        if x.llm_top is not None:
            with rnd.phase("distill_slm"):
                ins = {}
                for k in got:
                    ids = list(alloc[k].ids["S"])
                    t = x.llm_top.subset(ids)
                    ins[k] = LogitDistillIns(
                        rnd.round,
                        ids,
                        [x.paths.llm[i] for i in ids] if with_paths else [],
                        t.model,
                        t.vocab,
                        t.lengths,
                        t.indices,
                        t.values,
                        t.ce,
                    )
                distilled = rnd.broadcast(Task.DISTILL_LOGITS, ins)
        llm_losses: dict[int, LearnerLosses] = {}
        n_kd = 0
        if "L" in directions:
            with rnd.phase("distill_llm"):
                teach = {k: topk_from_payload(r) for k, r in got.items()}
                paths = (
                    {k: (x.paths.slm[k].ids, x.paths.slm[k].paths) for k in got}
                    if with_paths
                    else None
                )
                llm_losses, n_kd = llm_learns_logits(
                    rnd, teach, paths, x.paths.own(), LogitLoss.fedmkt(self.settings)
                )
        learned = learned_from_replies(dict(distilled), llm_losses)
        if with_paths:  # no reward from a pick whose teacher abstained (lada.filter.rewarding)
            attach_teacher_paths(learned, x.paths)
        for k, r in distilled.items():
            learned.fields.setdefault(k, {})["slm_distilled"] = r.num_distilled
        if "L" in directions:
            for k in got:
                learned.fields.setdefault(k, {})["llm_distilled_total"] = n_kd
        return learned

    def expected_reply(self, server: Any, task: Any) -> Any:
        """Every LOGITS reply carries the LLM's vocabulary (zoo models share one)."""
        if task == Task.LOGITS:
            from lada.federation.validation import Expected

            return Expected(vocab=server.vocab())
        return None

    # ---- the client side ----------------------------------------------------------------

    def client_handlers(self, role: Any) -> Mapping[str, Any]:
        return bind_handlers(
            role, {Task.LOGITS: client_logits, Task.DISTILL_LOGITS: client_distill_logits}
        )


def client_logits(role: Any, ins: LogitsIns) -> Payload:
    """The SLM's top-k logits and CE on the gold texts of public ``ids`` (FedMKT's upload;
    sent with its vocabulary fingerprint even for no ids, so the server can check it)."""
    role.enter_round(ins.round)
    ids = list(ins.ids)
    top = topk_on_gold(
        role.model,
        role.tokenizer,
        [role.public[i] for i in ids],
        ins.top_k,
        role.settings.distill.slm_optim.max_length,
        role.settings.model_name,
        vocab=role.vocab(),
    )
    return LogitsRes(ids, top.model, top.vocab, top.lengths, top.indices, top.values, top.ce)


def client_distill_logits(role: Any, ins: LogitDistillIns) -> Payload:
    """FedMKT's learner step on a client: LM + distill from the LLM's top-k where the LLM's CE
    is lower than the SLM's own (min-CE), + λ·L_CD with LaDa's paths."""
    role.enter_round(ins.round)
    ids = list(ins.ids)
    empty = np.zeros(0, dtype=np.float32)
    if not ids:
        return LogitDistillRes([], empty, empty, empty, num_pairs=0, num_distilled=0)
    teacher = TopKLogits(ids, ins.lengths, ins.indices, ins.values, ins.ce, ins.vocab, ins.model)
    teacher_paths = list(ins.teacher_paths) or None
    d = role.settings.distill
    own = None
    if teacher_paths is not None and role.needs_own_paths():
        own = role.own_paths(ids, ins.round)
    seed = role.task_seed(ins.round, "distill")
    out, n_kd = learn_from_logits(
        Learner(role.model, role.tokenizer, role.settings.model_name, role.vocab()),
        [role.public[i] for i in ids],
        {0: teacher},
        d,
        replace(d.slm_optim, seed=seed),
        paths=(teacher_paths, own) if teacher_paths is not None else None,
        loss=LogitLoss.fedmkt(role.host.settings),
    )
    return LogitDistillRes(
        ids=ids,
        loss_before=out.loss_before.astype(np.float32),
        loss_after=out.loss_after.astype(np.float32),
        margin=out.margin.astype(np.float32),
        num_pairs=out.num_pairs,
        num_distilled=n_kd,
        trained=trained_mask(out, len(ids)),
    )


__all__ = [
    "FedMKTConfig",
    "FedMKTHost",
    "Learner",
    "LogitLoss",
    "learn_from_logits",
    "llm_learns_logits",
    "topk_from_payload",
]
