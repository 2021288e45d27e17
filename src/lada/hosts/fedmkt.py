"""FedMKT (Fan et al., COLING 2025) as a host framework (spec §6).

Each round, after the clients' SFT on private data (the host's local step):

1. both sides compute, on the gold texts (prompt + target) of public samples, their top-k
   logits per target token (k = ``distill.top_k``, FedMKT's 128, clipped to the vocabulary)
   and a per-sample CE (mean token NLL); client k uploads its top-k for the ids of the LLM-side
   direction (task ``logits``), the server sends the LLM's top-k for client k's SLM-side ids
   with the learner step (task ``distill_logits``). Both sides compute their logits before
   either learns (mutual distillation on one snapshot).
2. Selective mutual distillation, FedMKT's min-CE rule per sample: a learner distils a sample
   only from a teacher whose CE on it is lower than its own; the LLM picks per sample the SLM
   with the lowest CE among those that sent logits for it (:func:`learn_from_logits`).
3. Loss = ``fedmkt_lm_weight``·LM + ``fedmkt_distill_weight``·distill (0.9 / 0.1), LM = NLL of
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
from typing import Any, Literal

import numpy as np

from lada.config.schema import DistillConfig
from lada.data.sample import Sample
from lada.federation.protocol import (
    DistillRes,
    LogitDistillIns,
    LogitDistillRes,
    LogitsIns,
    LogitsRes,
    PathsRes,
    Task,
)
from lada.train.distill import DistillOutcome, LogitHook, learn_from_paths
from lada.train.logit_distill import TopKLogits, check_same_vocab, min_ce_teacher
from lada.train.loop import OptimConfig

Selection = Literal["min_ce", "all"]


def learn_from_logits(
    model: Any,
    tokenizer: Any,
    samples: Sequence[Sample],
    teachers: Mapping[int, TopKLogits],
    teacher_paths: Sequence[str] | None,
    own_paths: Sequence[str] | None,
    cfg: DistillConfig,
    optim: OptimConfig,
    learner: str,
    vocab: str,
    lm_weight: float | None = None,
    kd_weight: float | None = None,
    selection: Selection = "min_ce",
) -> tuple[DistillOutcome, int]:
    """One learner's logit-distillation step over ``samples`` (items; a sample may be listed
    once per teacher path, it is then trained by LM and distillation once, by L_CD per item).

    The teacher of each sample: among ``teachers`` holding its id, the lowest CE; with
    ``selection="min_ce"`` (FedMKT) only when that CE is lower than the learner's own CE on the
    sample's gold target, measured before the step. Weights default to FedMKT's
    (``cfg.fedmkt_lm_weight`` / ``cfg.fedmkt_distill_weight``). Raises
    :class:`~lada.train.logit_distill.VocabularyMismatchError` for a teacher of another
    vocabulary. Returns the outcome of :func:`lada.train.distill.learn_from_paths` and the number
    of samples distilled."""
    from lada.train.logprobs import score_texts

    for t in teachers.values():
        check_same_vocab(learner, vocab, t.model, t.vocab)
    first: dict[str, int] = {}
    for i, s in enumerate(samples):
        first.setdefault(s.id, i)
    unique = [samples[i] for i in first.values()]
    own_ce = score_texts(
        model,
        tokenizer,
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
    if selection == "min_ce":
        chosen = min_ce_teacher(own_ce, teacher_ce)
    elif selection == "all":
        chosen = min_ce_teacher(np.full(len(unique), np.inf), teacher_ce)
    else:
        raise ValueError(f"unknown selection {selection!r} (min_ce | all)")
    per_sample: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for s, c in zip(unique, chosen, strict=True):
        per_sample[s.id] = None if c < 0 else teachers[keys[c]].sample(pos[keys[c]][s.id])
    is_first = [first[s.id] == i for i, s in enumerate(samples)]
    hook = LogitHook(
        teachers=[per_sample[s.id] if f else None for s, f in zip(samples, is_first, strict=True)],
        lm=is_first,
        lm_weight=cfg.fedmkt_lm_weight if lm_weight is None else lm_weight,
        kd_weight=cfg.fedmkt_distill_weight if kd_weight is None else kd_weight,
        student=cfg.kd_student,
    )
    out = learn_from_paths(
        model, tokenizer, samples, teacher_paths, own_paths, cfg, optim, logits=hook
    )
    return out, int((chosen >= 0).sum())


def topk_from_payload(r: LogitsRes | LogitDistillIns) -> TopKLogits:
    return TopKLogits(list(r.ids), r.lengths, r.indices, r.values, r.ce, r.vocab, r.model)


def transfer(
    round_idx: int,
    server: Any,
    transport: Any,
    rep: Any,
    alloc: dict[int, Any],
    directions: tuple[str, ...],
    rewards: bool,
    with_paths: bool,
    llm_paths: dict[str, str] | None = None,
    slm_paths: dict[int, PathsRes] | None = None,
) -> None:
    """FedMKT's exchange for given picks (``alloc``: all of P with the host alone), with LaDa's
    paths, L_CD and rewards when ``with_paths`` (plugin lada)."""
    from lada.federation.round import Phase, exchange_paths, ok_replies, record_learning

    def ok(task: Task, replies: dict[int, Any]) -> dict[int, Any]:
        return ok_replies(rep, task, replies)

    from lada.hosts.gold import labelled_only

    alloc = labelled_only(server, alloc)  # gold text only (docs/testbed.md)
    slm_p: dict[int, PathsRes] = {}
    llm_p: dict[str, str] = {}
    if with_paths:
        slm_p, llm_p = exchange_paths(
            round_idx, server, transport, rep, alloc, directions, llm_paths, slm_paths
        )
        alloc = {k: a for k, a in alloc.items() if k in slm_p}
    top_k = server.settings.distill.top_k
    with Phase(rep, "logits"):
        # every client answers (with no ids in a one-way host): its vocabulary is checked here
        ask = {
            k: LogitsIns(round_idx, list(a.ids["L"]) if "L" in directions else [], top_k)
            for k, a in alloc.items()
        }
        got: dict[int, LogitsRes] = ok(
            Task.LOGITS, transport.broadcast(round_idx, Task.LOGITS, ask)
        )
        for r in got.values():
            check_same_vocab(server.model_name, server.vocab(), r.model, r.vocab)
        s_ids = [i for i in server.public_ids if any(i in alloc[k].ids["S"] for k in got)]
        llm_top = server.topk(s_ids) if "S" in directions else None

    distilled: dict[int, LogitDistillRes] = {}
    if llm_top is not None:
        with Phase(rep, "distill_slm"):
            ins = {}
            for k in got:
                ids = list(alloc[k].ids["S"])
                t = llm_top.subset(ids)
                ins[k] = LogitDistillIns(
                    round_idx,
                    ids,
                    [llm_p[i] for i in ids] if with_paths else [],
                    t.model,
                    t.vocab,
                    t.lengths,
                    t.indices,
                    t.values,
                    t.ce,
                )
            distilled = ok(
                Task.DISTILL_LOGITS, transport.broadcast(round_idx, Task.DISTILL_LOGITS, ins)
            )

    llm_losses = {}
    n_kd = 0
    if "L" in directions:
        with Phase(rep, "distill_llm"):
            teach = {k: topk_from_payload(r) for k, r in got.items()}
            paths = {k: (slm_p[k].ids, slm_p[k].paths) for k in got} if with_paths else None
            llm_losses, n_kd = server.learn_logits(round_idx, teach, paths, llm_p)

    as_distill: dict[int, DistillRes] = dict(distilled)
    record_learning(server, rep, as_distill, llm_losses, rewards)
    for k, r in distilled.items():
        rep.distill.setdefault(k, {})["slm_distilled"] = r.num_distilled
    if "L" in directions:
        for k in got:
            rep.distill.setdefault(k, {})["llm_distilled_total"] = n_kd


__all__ = ["learn_from_logits", "topk_from_payload", "transfer"]
