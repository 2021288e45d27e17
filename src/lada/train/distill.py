"""One learner's distillation step on teacher reasoning paths (spec §4 with the plain host).

    L = sft_weight · NLL(y_pref | x)  +  λ · L_CD(y_pref, y_rej)

The reference π_ref is the learner at the start of the step (frozen: its log-probs are scored
once, before training). The learner's loss ℓ_i on the *teacher's* path, before and after the
step, feeds the filter's reward (spec §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lada.config.schema import DistillConfig
from lada.data.sample import Sample
from lada.train.batching import collate, encode_pairs, length_bucketed_batches
from lada.train.logprobs import score_texts, target_token_logprobs
from lada.train.loop import OptimConfig, TrainStats, train
from lada.train.losses import (
    PreferencePairs,
    choose_preference,
    contrastive_distill_loss,
    contrastive_margin,
)


@dataclass
class DistillOutcome:
    loss_before: np.ndarray  # [n] learner's mean token NLL of the teacher path, before
    loss_after: np.ndarray  # [n] ... after
    margin: np.ndarray  # [n] β-scaled contrastive margin after training (0 outside pairs)
    num_pairs: int  # pairs in L_CD (identical paths skipped)
    stats: TrainStats | None


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
    from lada.eval.extract import extract_answer

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
    from lada.eval.extract import extract_answer

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


def learn_from_paths(
    model: nn.Module,
    tokenizer,
    samples: Sequence[Sample],
    teacher_paths: Sequence[str],
    own_paths: Sequence[str],
    cfg: DistillConfig,
    optim: OptimConfig,
    host: str = "sft",
) -> DistillOutcome:
    """Train ``model`` on L = L_host + λ·L_CD over ``samples`` (spec §4).

    L_host is sft_weight·NLL(preferred) for the plain host, and FedCoT's
    α·L_rationale + (1 − α)·L_label on the preferred path for ``host="fedcot"``
    (α = ``cfg.fedcot_alpha``, :mod:`lada.hosts.fedcot`)."""
    n = len(samples)
    prompts = [s.prompt() for s in samples]
    pairs = preference_pairs(samples, teacher_paths, own_paths, cfg)
    # the preferred path of each sample: the pair's choice, or the teacher's path when skipped
    preferred = list(teacher_paths)
    for j, i in enumerate(pairs.indices):
        preferred[i] = pairs.preferred[j]
    learn = np.ones(n, dtype=bool)  # samples that enter the loss at all
    if cfg.unverified == "skip":
        learn = verified_mask(samples, preferred)
        keep = [j for j, i in enumerate(pairs.indices) if learn[i]]
        pairs = PreferencePairs(
            [pairs.indices[j] for j in keep],
            [pairs.preferred[j] for j in keep],
            [pairs.rejected[j] for j in keep],
            [pairs.teacher_preferred[j] for j in keep],
        )
    use_cd = cfg.lambda_cd > 0 and len(pairs) > 0
    pair_of = np.full(n, -1, dtype=np.int64)
    pair_of[pairs.indices] = np.arange(len(pairs))
    pair_prompts = [prompts[i] for i in pairs.indices]

    before_teacher = _score(model, tokenizer, prompts, teacher_paths, optim)
    ref_pref = ref_rej = None
    if use_cd:
        ref_pref = torch.tensor(
            _score(model, tokenizer, pair_prompts, pairs.preferred, optim)["logprob_sum"]
        )
        ref_rej = torch.tensor(
            _score(model, tokenizer, pair_prompts, pairs.rejected, optim)["logprob_sum"]
        )

    enc_pref = encode_pairs(tokenizer, prompts, preferred, optim.max_length)
    enc_rej = encode_pairs(tokenizer, pair_prompts, pairs.rejected, optim.max_length)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    lengths = [
        len(ids) + (len(enc_rej[pair_of[i]][0]) if pair_of[i] >= 0 else 0)
        for i, (ids, _) in enumerate(enc_pref)
    ]

    weight = torch.as_tensor(learn, dtype=torch.float32)
    n_label = None
    if host == "fedcot":
        from lada.hosts.fedcot import fedcot_loss, label_token_counts

        n_label = torch.as_tensor(label_token_counts(tokenizer, preferred))

    def loss_fn(m: nn.Module, idx: list[int]) -> tuple[Tensor, Tensor]:
        in_pair = [i for i in idx if pair_of[i] >= 0] if use_cd else []
        rows = [enc_pref[i] for i in idx] + [enc_rej[pair_of[i]] for i in in_pair]
        logp, mask = target_token_logprobs(m, collate(rows, pad_id))
        seq = logp.sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1)
        b = len(idx)
        nll = -seq[:b] / counts[:b]
        w = weight[idx].to(seq.device)
        if n_label is None:
            loss = cfg.sft_weight * (-(w * seq[:b]).sum() / (w * counts[:b]).sum().clamp(min=1))
        else:
            loss = fedcot_loss(logp[:b], mask[:b], n_label[idx], cfg.fedcot_alpha, weight=w)
        if in_pair:
            j = torch.as_tensor(pair_of[in_pair])
            pos = torch.as_tensor([idx.index(i) for i in in_pair])
            dev = seq.device
            l_cd = contrastive_distill_loss(
                seq[pos], seq[b:], ref_pref[j].to(dev), ref_rej[j].to(dev), beta=cfg.beta
            )
            loss = loss + cfg.lambda_cd * l_cd
        return loss, nll

    stats = None
    if n:
        stats = train(
            model,
            lambda epoch: length_bucketed_batches(
                lengths, optim.batch_size, seed=optim.seed + epoch
            ),
            loss_fn,
            optim,
            item_tokens=lengths,
            num_items=n,
        )

    after_teacher = _score(model, tokenizer, prompts, teacher_paths, optim)
    margin = np.zeros(n, dtype=np.float64)
    if use_cd:
        pol_pref = _score(model, tokenizer, pair_prompts, pairs.preferred, optim)["logprob_sum"]
        pol_rej = _score(model, tokenizer, pair_prompts, pairs.rejected, optim)["logprob_sum"]
        m = contrastive_margin(
            torch.tensor(pol_pref), torch.tensor(pol_rej), ref_pref, ref_rej, cfg.beta
        )
        margin[pairs.indices] = m.numpy()
    return DistillOutcome(
        loss_before=before_teacher["mean_nll"],
        loss_after=after_teacher["mean_nll"],
        margin=margin,
        num_pairs=len(pairs) if use_cd else 0,
        stats=stats,
    )
