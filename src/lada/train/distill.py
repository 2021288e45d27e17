"""One learner's distillation step on teacher reasoning paths (spec §4 with the plain host).

    L = sft_weight · NLL(y_pref | x)  +  λ · L_CD(y_pref, y_rej)

Host hooks replace the first term: a host's ``host_loss`` (a :data:`HostLoss`, e.g. FedCoT's
α·L_rationale + (1 − α)·L_label, :mod:`lada.hosts.fedcot`), and for the logit-distillation hosts
(FedMKT, FedCoLLM; a :class:`LogitHook`)
``lm_weight · NLL(gold target | x) + kd_weight · KL(teacher top-k ‖ learner)``, where the
paths only enter L_CD and the reward (and may be absent: the host alone).

The reference π_ref is the learner at the start of the step (frozen: its log-probs are scored
once, before training). The learner's loss ℓ_i on the *teacher's* path, before and after the
step, feeds the filter's reward (spec §3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from lada.config.schema import DistillConfig
from lada.data.sample import Sample
from lada.train.batching import Encoded, collate, encode_pairs, length_bucketed_batches
from lada.train.logit_distill import StudentNorm, align_teachers, topk_distill_loss
from lada.train.logprobs import (
    logprobs_from_logits,
    score_texts,
    target_logits,
    target_token_logprobs,
)
from lada.train.loop import OptimConfig, TrainStats, train
from lada.train.losses import (
    PreferencePairs,
    choose_preference,
    contrastive_distill_loss,
    contrastive_margin,
    lada_total_loss,
    path_logprob,
)


@dataclass
class DistillOutcome:
    loss_before: np.ndarray  # [n] learner's mean token NLL of the teacher path, before
    loss_after: np.ndarray  # [n] ... after
    margin: np.ndarray  # [n] β-scaled contrastive margin after training (0 outside pairs)
    num_pairs: int  # pairs in L_CD (identical paths skipped)
    stats: TrainStats | None
    # [n] True where the sample entered the loss with its teacher's path (unverified=skip
    # leaves some out, an empty teacher path never counts); only these are rewarded
    trained: np.ndarray | None = None
    # [n] True where the sample's L_CD pair entered the loss
    paired: np.ndarray | None = None


@dataclass
class LogitHook:
    """The logit-distillation hosts' term of :func:`learn_from_paths` (FedMKT, FedCoLLM):

        lm_weight · NLL(gold target | x)  +  kd_weight · topk_distill_loss(teacher top-k)

    per batch, the NLL averaged over the tokens of the items with ``lm[i]`` (a sample listed
    several times, once per teacher, is trained once) and the KL over the tokens of the items
    with a teacher top-k ``teachers[i]`` ((indices, values) on the gold target's tokens; None:
    no distillation, e.g. FedMKT's min-CE rule said no)."""

    teachers: Sequence[tuple[np.ndarray, np.ndarray] | None]
    lm: Sequence[bool]
    lm_weight: float
    kd_weight: float
    student: StudentNorm = "topk"


@dataclass
class PathBatch:
    """One batch of preferred paths, as a host's L_host sees it (the batch's first rows).

    ``logp``/``mask`` [B, K]: per-token log-probs of the supervised tokens (0 off mask);
    ``seq`` [B] their sums; ``counts`` [B] supervised tokens (at least 1); ``weight`` [B] 1 for
    samples that are learned, 0 for those that must not be (unverified paths); ``idx`` the
    batch's item indices into the step's samples; ``prompts`` their prompts. A host whose loss
    has inputs of its own (FedCoT's task prefixes) runs them through ``score(prompts,
    targets)``: the learner's per-token log-probs ``(logp, mask)`` of each target given its
    prompt, encoded as the step's own rows (same truncation, EOS) and differentiable."""

    logp: Tensor
    mask: Tensor
    seq: Tensor
    counts: Tensor
    weight: Tensor
    idx: list[int]
    prompts: list[str] = field(default_factory=list)
    score: Callable[[Sequence[str], Sequence[str]], tuple[Tensor, Tensor]] | None = None


BatchLoss = Callable[[PathBatch], Tensor]
UnlabelledCd = Literal["contrast", "floor", "off"]
# a host's L_host on preferred paths: (cfg, the learner's tokenizer, every item's preferred path)
# -> the batch loss; default :func:`sft_host_loss`
HostLoss = Callable[[DistillConfig, object, Sequence[str]], BatchLoss]


def sft_host_loss(cfg: DistillConfig, tokenizer: object, preferred: Sequence[str]) -> BatchLoss:
    """The plain host's L_host: sft_weight · NLL of the preferred paths (mean over the learned
    samples' tokens)."""

    def loss(b: PathBatch) -> Tensor:
        w = b.weight
        return cfg.sft_weight * (-(w * b.seq).sum() / (w * b.counts).sum().clamp(min=1))

    return loss


def preference_pairs(
    samples: Sequence[Sample],
    teacher_paths: Sequence[str],
    own_paths: Sequence[str],
    cfg: DistillConfig,
) -> PreferencePairs:
    """Role-based by default (the learner prefers the teacher); correctness-based on option,
    using the gold answers of public samples (when P carries labels)."""
    if cfg.preference == "role":
        return choose_preference(teacher_paths, own_paths, skip_identical=cfg.skip_identical)
    from lada.data.extract import extract_answer

    return choose_preference(
        teacher_paths,
        own_paths,
        teacher_answers=[
            extract_answer(p, s.answer_type) for p, s in zip(teacher_paths, samples, strict=True)
        ],
        own_answers=[
            extract_answer(p, s.answer_type) for p, s in zip(own_paths, samples, strict=True)
        ],
        gold_answers=[s.answer or None for s in samples],
        mode="correctness",
        skip_identical=cfg.skip_identical,
    )


def verified_mask(samples: Sequence[Sample], paths: Sequence[str]) -> np.ndarray:
    """Whether each path's final answer equals its sample's gold answer; True where P carries
    no label (nothing to verify against)."""
    from lada.data.extract import extract_answer

    ok = np.ones(len(samples), dtype=bool)
    for i, (s, p) in enumerate(zip(samples, paths, strict=True)):
        if s.answer:
            got = extract_answer(p, s.answer_type)
            ok[i] = got is not None and got.strip() == s.answer.strip()
    return ok


def _score(
    model: nn.Module, tokenizer, prompts, texts, optim: OptimConfig
) -> dict[str, np.ndarray]:
    return score_texts(model, tokenizer, prompts, texts, batch_size=64, max_length=optim.max_length)


def _path_logprobs(
    model: nn.Module, tokenizer, prompts, texts, optim: OptimConfig, cfg: DistillConfig
) -> Tensor:
    """log pi(text | prompt) as L_CD's margin uses it (``cfg.cd_norm``), without gradients."""
    sc = _score(model, tokenizer, prompts, texts, optim)
    return path_logprob(
        torch.tensor(sc["logprob_sum"]), torch.tensor(sc["num_tokens"]), cfg.cd_norm
    )


def _pair_logprobs(
    model: nn.Module,
    tokenizer,
    prompts: list[str],
    pairs: PreferencePairs,
    optim: OptimConfig,
    cfg: DistillConfig,
) -> tuple[Tensor, Tensor]:
    """log π of the preferred and of the rejected path of every pair (``cfg.cd_norm``)."""
    pref = _path_logprobs(model, tokenizer, prompts, pairs.preferred, optim, cfg)
    rej = _path_logprobs(model, tokenizer, prompts, pairs.rejected, optim, cfg)
    return pref, rej


@dataclass
class _Targets:
    """What a step learns from: the kept L_CD pairs, each item's scored text (the teacher's
    path, or the gold target without paths), its preferred path, and whether it is learned."""

    pairs: PreferencePairs
    scored: list[str]
    preferred: list[str]
    learn: np.ndarray


def _targets(
    samples: Sequence[Sample],
    teacher_paths: Sequence[str] | None,
    own_paths: Sequence[str] | None,
    cfg: DistillConfig,
    unlabelled_cd: UnlabelledCd = "contrast",
) -> _Targets:
    if teacher_paths is None:
        pairs = PreferencePairs([], [], [], [])
        scored = [s.target() for s in samples]
    else:
        pairs = preference_pairs(samples, teacher_paths, own_paths or teacher_paths, cfg)
        scored = list(teacher_paths)
    # the preferred path of each sample: the pair's choice, or the teacher's path when skipped
    preferred = list(scored)
    for j, i in enumerate(pairs.indices):
        preferred[i] = pairs.preferred[j]
    learn = np.ones(len(samples), dtype=bool)  # samples that enter the loss at all
    if teacher_paths is not None:
        # an empty teacher path is an abstention (lada.train.boundary): nothing to learn, and no
        # pair may contrast an empty path
        learn = np.array([bool(p) for p in teacher_paths], dtype=bool)
        keep = [j for j in range(len(pairs)) if pairs.preferred[j] and pairs.rejected[j]]
        pairs = _subset(pairs, keep)
    if cfg.unverified == "skip":
        learn &= verified_mask(samples, preferred)
        # verification filters a pair only where a label can decide: on a labelled question the
        # pair contrasts only when the preferred path is right and the rejected one wrong; on an
        # unlabelled one the role decides (spec §4: SLM k's domain knowledge reaching the LLM)
        rej_ok = verified_mask([samples[i] for i in pairs.indices], pairs.rejected)
        keep = [
            j
            for j, i in enumerate(pairs.indices)
            if learn[i] and (not samples[i].answer or not rej_ok[j])
        ]
        pairs = _subset(pairs, keep)
    if unlabelled_cd == "off":
        pairs = _subset(pairs, [j for j, i in enumerate(pairs.indices) if samples[i].answer])
    return _Targets(pairs, scored, preferred, learn)


def _subset(pairs: PreferencePairs, keep: Sequence[int]) -> PreferencePairs:
    """The pairs at positions ``keep``."""
    return PreferencePairs(
        [pairs.indices[j] for j in keep],
        [pairs.preferred[j] for j in keep],
        [pairs.rejected[j] for j in keep],
        [pairs.teacher_preferred[j] for j in keep],
    )


@dataclass
class _Contrast:
    """λ·L_CD's side of a step: item → pair index (-1: none), whether the term is on, the
    rejected paths encoded, and the frozen reference's log-probs of both paths of each pair."""

    cfg: DistillConfig
    pair_of: np.ndarray
    use: bool
    enc_rej: list[Encoded]
    ref_pref: Tensor | None
    ref_rej: Tensor | None
    floor: Tensor | None = None  # [pairs] bool: the rejected term floored (contrastive_margin)

    def pairs_in(self, idx: list[int]) -> list[int]:
        """The batch items that carry an L_CD pair."""
        return [i for i in idx if self.pair_of[i] >= 0] if self.use else []

    def add_to(
        self,
        loss: Tensor,
        pref: tuple[Tensor, Tensor],
        rej: tuple[Tensor, Tensor],
        in_pair: list[int],
    ) -> Tensor:
        """L = L_host + λ·L_CD (:func:`lada.train.losses.lada_total_loss`) given the learner's
        (summed log-probs, token counts) of the batch pairs' preferred and rejected paths."""
        j = torch.as_tensor(self.pair_of[in_pair])
        dev = pref[0].device
        norm = self.cfg.cd_norm
        l_cd = contrastive_distill_loss(
            path_logprob(*pref, norm),
            path_logprob(*rej, norm),
            self.ref_pref[j].to(dev),
            self.ref_rej[j].to(dev),
            beta=self.cfg.beta,
            floor=None if self.floor is None else self.floor[j],
        )
        return lada_total_loss(loss, l_cd, self.cfg.lambda_cd)


def learn_from_paths(
    model: nn.Module,
    tokenizer,
    samples: Sequence[Sample],
    teacher_paths: Sequence[str] | None,
    own_paths: Sequence[str] | None,
    cfg: DistillConfig,
    optim: OptimConfig,
    host_loss: HostLoss | None = None,
    logits: LogitHook | None = None,
    unlabelled_cd: UnlabelledCd = "contrast",
) -> DistillOutcome:
    """Train ``model`` on L = L_host + λ·L_CD over ``samples`` (spec §4,
    :func:`lada.train.losses.lada_total_loss`).

    ``unlabelled_cd`` sets L_CD on the pairs of samples without a label (the LLM's step passes
    ``distill.llm_unlabelled_cd``): "contrast" the spec's term; "floor" (ours) the rejected
    path's term floored at the reference (:func:`lada.train.losses.contrastive_margin`);
    "off" no pair there (the preferred path is still learnt by L_host).

    L_host is ``host_loss`` on the preferred paths (default :func:`sft_host_loss`,
    sft_weight·NLL(preferred); FedCoT's α·L_rationale + (1 − α)·L_label is
    :meth:`lada.hosts.fedcot.FedCoTHost.host_loss`), or the :class:`LogitHook`'s LM + KL on the
    gold texts when ``logits`` is given. Only with ``logits`` may
    ``teacher_paths`` be None (no paths: no L_CD, and ``loss_before``/``loss_after`` are the
    learner's mean token NLL of the gold targets instead of the teacher's paths)."""
    if teacher_paths is None and logits is None:
        raise ValueError("learn_from_paths needs teacher paths unless a LogitHook is given")
    n = len(samples)
    prompts = [s.prompt() for s in samples]
    t = _targets(samples, teacher_paths, own_paths, cfg, unlabelled_cd)
    pairs = t.pairs
    use_cd = cfg.lambda_cd > 0 and len(pairs) > 0
    pair_of = np.full(n, -1, dtype=np.int64)
    pair_of[pairs.indices] = np.arange(len(pairs))
    pair_prompts = [prompts[i] for i in pairs.indices]

    before_teacher = _score(model, tokenizer, prompts, t.scored, optim)
    ref_pref = ref_rej = None
    if use_cd:
        ref_pref, ref_rej = _pair_logprobs(model, tokenizer, pair_prompts, pairs, optim, cfg)

    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    enc_rej = encode_pairs(tokenizer, pair_prompts, pairs.rejected, optim.max_length)
    floor = None
    if unlabelled_cd == "floor":
        floor = torch.tensor([not samples[i].answer for i in pairs.indices], dtype=torch.bool)
    cd = _Contrast(cfg, pair_of, use_cd, enc_rej, ref_pref, ref_rej, floor)
    if logits is None:
        enc_pref = encode_pairs(tokenizer, prompts, t.preferred, optim.max_length)
        lengths = [
            len(ids) + (len(enc_rej[pair_of[i]][0]) if pair_of[i] >= 0 else 0)
            for i, (ids, _) in enumerate(enc_pref)
        ]
        host_batch_loss = (host_loss or sft_host_loss)(cfg, tokenizer, t.preferred)
        loss_fn = _path_loss_fn(
            enc_pref, cd, pad_id, host_batch_loss, t.learn, (tokenizer, prompts, optim.max_length)
        )
        active = [i for i in range(n) if t.learn[i] or pair_of[i] >= 0]  # no empty steps
    else:
        enc_gold = encode_pairs(tokenizer, prompts, [s.target() for s in samples], optim.max_length)
        enc_pp = encode_pairs(tokenizer, pair_prompts, pairs.preferred, optim.max_length)
        lengths = [
            len(ids)
            + (
                len(enc_pp[pair_of[i]][0]) + len(enc_rej[pair_of[i]][0])
                if use_cd and pair_of[i] >= 0
                else 0
            )
            for i, (ids, _) in enumerate(enc_gold)
        ]
        loss_fn = _logit_loss_fn(enc_gold, enc_pp, cd, pad_id, logits)
        active = [
            i
            for i in range(n)
            if logits.lm[i] or logits.teachers[i] is not None or (use_cd and pair_of[i] >= 0)
        ]

    stats = None
    if active:
        act_len = [lengths[i] for i in active]
        stats = train(
            model,
            lambda epoch: [
                [active[j] for j in b]
                for b in length_bucketed_batches(act_len, optim.batch_size, seed=optim.seed + epoch)
            ],
            loss_fn,
            optim,
            progress="distill",
            item_tokens=lengths,
            num_items=n,
        )

    after_teacher = _score(model, tokenizer, prompts, t.scored, optim)
    margin = np.zeros(n, dtype=np.float64)
    if use_cd:
        pol_pref, pol_rej = _pair_logprobs(model, tokenizer, pair_prompts, pairs, optim, cfg)
        m = contrastive_margin(pol_pref, pol_rej, ref_pref, ref_rej, cfg.beta, floor)
        margin[pairs.indices] = m.numpy()
    trained = np.isin(np.arange(n), np.asarray(active, dtype=np.int64))
    if teacher_paths is not None:
        # the reward is the loss on the teacher's path: an empty one (the teacher abstained) was
        # never learnt, whatever else the item trained (a logit host's LM on the gold text)
        trained &= np.array([bool(p) for p in teacher_paths], dtype=bool)
    paired = np.zeros(n, dtype=bool)
    if use_cd:
        paired[pairs.indices] = True
    return DistillOutcome(
        loss_before=before_teacher["mean_nll"],
        loss_after=after_teacher["mean_nll"],
        margin=margin,
        num_pairs=len(pairs) if use_cd else 0,
        stats=stats,
        trained=trained,
        paired=paired,
    )


def _path_loss_fn(
    enc_pref: list[Encoded],
    cd: _Contrast,
    pad_id: int,
    host_loss: BatchLoss,
    learn: np.ndarray,
    inputs: tuple[object, Sequence[str], int],
) -> Callable[[nn.Module, list[int]], tuple[Tensor, Tensor]]:
    """The path hosts' batch loss: L_host(preferred) + λ·L_CD; samples with ``learn[i]`` False
    (unverified) give no L_host term. ``inputs``: (tokenizer, every item's prompt, max_length)
    for :attr:`PathBatch.prompts` and :attr:`PathBatch.score`."""
    weight = torch.as_tensor(learn, dtype=torch.float32)
    tokenizer, prompts, max_length = inputs

    def loss_fn(m: nn.Module, idx: list[int]) -> tuple[Tensor, Tensor]:
        def score(ps: Sequence[str], ts: Sequence[str]) -> tuple[Tensor, Tensor]:
            enc = encode_pairs(tokenizer, list(ps), list(ts), max_length)
            return target_token_logprobs(m, collate(enc, pad_id))

        in_pair = cd.pairs_in(idx)
        rows = [enc_pref[i] for i in idx] + [cd.enc_rej[cd.pair_of[i]] for i in in_pair]
        logp, mask = target_token_logprobs(m, collate(rows, pad_id))
        seq = logp.sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1)
        b = len(idx)
        nll = -seq[:b] / counts[:b]
        w = weight[idx].to(seq.device)
        loss = host_loss(
            PathBatch(
                logp[:b], mask[:b], seq[:b], counts[:b], w, idx, [prompts[i] for i in idx], score
            )
        )
        if in_pair:
            pos = torch.as_tensor([idx.index(i) for i in in_pair])
            loss = cd.add_to(loss, (seq[pos], counts[pos]), (seq[b:], counts[b:]), in_pair)
        return loss, nll

    return loss_fn


def _logit_loss_fn(
    enc_gold: list[Encoded],
    enc_pp: list[Encoded],
    cd: _Contrast,
    pad_id: int,
    hook: LogitHook,
) -> Callable[[nn.Module, list[int]], Tensor]:
    """The logit hosts' batch loss: lm_weight·NLL(gold) + kd_weight·KL(top-k) + λ·L_CD."""

    def loss_fn(m: nn.Module, idx: list[int]) -> Tensor:
        in_pair = cd.pairs_in(idx)
        gold = [i for i in idx if hook.lm[i] or hook.teachers[i] is not None]
        rows = (
            [enc_gold[i] for i in gold]
            + [enc_pp[cd.pair_of[i]] for i in in_pair]
            + [cd.enc_rej[cd.pair_of[i]] for i in in_pair]
        )
        out, targets, mask = target_logits(m, collate(rows, pad_id))
        seq = logprobs_from_logits(out, targets, mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1)
        loss = seq.sum() * 0.0
        lm = [r for r, i in enumerate(gold) if hook.lm[i]]
        if lm:
            loss = loss + hook.lm_weight * (-seq[lm].sum() / counts[lm].sum())
        kd = [r for r, i in enumerate(gold) if hook.teachers[i] is not None]
        if kd:
            t_idx, t_val, kd_mask = align_teachers(mask[kd], [hook.teachers[gold[r]] for r in kd])
            kd_loss = topk_distill_loss(out[kd], t_idx, t_val, kd_mask, student=hook.student)
            loss = loss + hook.kd_weight * kd_loss
        if in_pair:
            g, p = len(gold), len(in_pair)
            pref = (seq[g : g + p], counts[g : g + p])
            loss = cd.add_to(loss, pref, (seq[g + p :], counts[g + p :]), in_pair)
        return loss

    return loss_fn
