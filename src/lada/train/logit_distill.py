"""Top-k logit distillation (FedMKT's and FedCoLLM's learner step, spec §6).

A teacher computes, on the gold text of public samples (prompt + target), its top-k logits at
every supervised position (the target tokens and EOS, the positions the LM term trains; the
prompt positions are not distilled, ours) and its per-sample CE (mean token NLL of the target).
The learner adds to its LM loss

    distill = mean over distilled tokens t of  KL(p_T,t ‖ q_S,t)
            = Σ_{j ∈ topk_t} p_T,t(j) · (log p_T,t(j) − log q_S,t(j))

with p_T,t = softmax of the teacher's k logits at t (the teacher's distribution renormalised
over its top-k) and, ours by default (``student="topk"``), q_S,t = softmax of the student's
logits *restricted to the same k token ids* (renormalised over them). ``student="full"`` uses
the student's log-softmax over its whole vocabulary gathered at those ids instead (closer to
FedMKT's cross-entropy against a sparse target; the KL is then still ≥ 0, 0 only when the
student puts all its mass on the top-k as the teacher does). Temperature 1.

Logits are comparable only between models sharing one tokenizer: every top-k set carries a
vocabulary fingerprint (:func:`vocab_fingerprint`), and a learner given a teacher's top-k of
another vocabulary stops with :class:`VocabularyMismatchError` (token alignment across
tokenizers, which FedMKT has, is not implemented here).

FedMKT's per-sample selection (min-CE, :func:`min_ce_teacher`): the learner distils a sample
only from a teacher whose CE on it is lower than its own; with several teachers, from the one
with the lowest CE.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from lada.config.overrides import ConfigError

StudentNorm = Literal["topk", "full"]


class VocabularyMismatchError(ConfigError):
    """Two models with different vocabularies were asked to compare logits."""


def vocab_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's sorted (token, id) items (16 hex digits)."""
    items = sorted(tokenizer.get_vocab().items())
    data = json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]


_FINGERPRINTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def cached_vocab_fingerprint(tokenizer: Any) -> str:
    """:func:`vocab_fingerprint`, computed once per tokenizer object (a role asks for it with
    every logit exchange)."""
    try:
        return _FINGERPRINTS[tokenizer]
    except KeyError:
        fp = _FINGERPRINTS[tokenizer] = vocab_fingerprint(tokenizer)
        return fp


def check_same_vocab(learner: str, learner_vocab: str, teacher: str, teacher_vocab: str) -> None:
    """Raise :class:`VocabularyMismatchError` unless the two fingerprints are equal."""
    if learner_vocab != teacher_vocab:
        raise VocabularyMismatchError(
            f"logit distillation needs one shared vocabulary, but learner {learner!r} "
            f"(vocabulary {learner_vocab}) and teacher {teacher!r} (vocabulary {teacher_vocab}) "
            "use different tokenizers; token alignment across tokenizers is not implemented: "
            "use models that share a tokenizer, or a path-based host (sft, fedcot)"
        )


@dataclass
class TopKLogits:
    """One model's top-k logits on the supervised tokens of public samples' gold texts.

    Sample j's rows are ``indices[offsets[j]:offsets[j + 1]]`` (``lengths[j]`` tokens)."""

    ids: list[str]
    lengths: np.ndarray  # [n] int32: supervised tokens per sample
    indices: np.ndarray  # [N, k] int16 (vocabularies up to 32767) or int32: token ids
    values: np.ndarray  # [N, k] float16: their logits
    ce: np.ndarray  # [n] float32: mean token NLL of each gold target
    vocab: str  # vocabulary fingerprint
    model: str  # the model's name (for error messages)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])

    def sample(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        o = self.offsets
        return self.indices[o[j] : o[j + 1]], self.values[o[j] : o[j + 1]]

    def by_id(self) -> dict[str, int]:
        return {pid: j for j, pid in enumerate(self.ids)}

    def subset(self, ids: Sequence[str]) -> TopKLogits:
        pos = self.by_id()
        rows = [pos[i] for i in ids]
        o = self.offsets
        parts = [np.arange(o[j], o[j + 1]) for j in rows]
        take = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return TopKLogits(
            ids=list(ids),
            lengths=self.lengths[rows].astype(np.int32),
            indices=self.indices[take],
            values=self.values[take],
            ce=self.ce[rows].astype(np.float32),
            vocab=self.vocab,
            model=self.model,
        )


def _index_dtype(width: int) -> np.dtype:
    return np.dtype(np.int16) if width <= np.iinfo(np.int16).max + 1 else np.dtype(np.int32)


@torch.no_grad()
def compute_topk(
    model,
    tokenizer,
    ids: Sequence[str],
    prompts: Sequence[str],
    targets: Sequence[str],
    k: int,
    max_length: int,
    model_name: str,
    batch_size: int = 8,
    vocab: str | None = None,
) -> TopKLogits:
    """``model``'s top-k logits (k clipped to its logits' width) and CE on ``prompt + target``."""
    from lada.train.batching import collate, encode_pairs, length_bucketed_batches
    from lada.train.logprobs import logprobs_from_logits, target_logits

    encoded = encode_pairs(tokenizer, prompts, targets, max_length)
    n = len(encoded)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    per_idx: list[np.ndarray] = [np.zeros((0, 1), np.int64)] * n
    per_val: list[np.ndarray] = [np.zeros((0, 1), np.float32)] * n
    ce = np.zeros(n, dtype=np.float32)
    kk, vocab_width = max(int(k), 1), 1
    was_training = model.training
    model.eval()
    try:
        lengths = [len(x) for x, _ in encoded]
        for idx in length_bucketed_batches(lengths, batch_size, shuffle=False):
            logits, tgt, mask = target_logits(model, collate([encoded[i] for i in idx], pad_id))
            vocab_width = logits.shape[-1]
            kk = min(max(int(k), 1), vocab_width)
            logp = logprobs_from_logits(logits, tgt, mask)
            counts = mask.sum(dim=1).clamp(min=1)
            ce[idx] = (-logp.sum(dim=1) / counts).cpu().numpy()
            vals, top = logits.topk(kk, dim=-1)
            m, vals, top = mask.cpu(), vals.cpu(), top.cpu()
            for r, i in enumerate(idx):
                per_idx[i] = top[r][m[r]].numpy()
                per_val[i] = vals[r][m[r]].numpy()
    finally:
        model.train(was_training)
    return TopKLogits(
        ids=list(ids),
        lengths=np.asarray([a.shape[0] for a in per_idx], dtype=np.int32),
        indices=np.concatenate([a.reshape(-1, kk) for a in per_idx] or [np.zeros((0, kk))]).astype(
            _index_dtype(vocab_width)
        ),
        values=np.concatenate([a.reshape(-1, kk) for a in per_val] or [np.zeros((0, kk))]).astype(
            np.float16
        ),
        ce=ce,
        vocab=vocab if vocab is not None else vocab_fingerprint(tokenizer),
        model=model_name,
    )


def topk_on_gold(
    model: Any,
    tokenizer: Any,
    samples: Sequence[Any],
    k: int,
    max_length: int,
    model_name: str,
    vocab: str | None = None,
) -> TopKLogits:
    """:func:`compute_topk` on the gold texts (prompt + target) of public ``samples``
    (:class:`lada.data.sample.Sample`): what every logit host's teacher sends."""
    return compute_topk(
        model,
        tokenizer,
        [s.id for s in samples],
        [s.prompt() for s in samples],
        [s.target() for s in samples],
        k,
        max_length,
        model_name,
        vocab=vocab,
    )


def min_ce_teacher(learner_ce: np.ndarray, teacher_ce: np.ndarray) -> np.ndarray:
    """FedMKT's min-CE rule per sample: the teacher (row of ``teacher_ce`` [m, n], NaN where a
    teacher sent nothing for the sample) with the lowest CE, if that CE is lower than the
    learner's own (``learner_ce`` [n]); else -1 (no distillation). Ties: the lowest row."""
    t = np.asarray(teacher_ce, dtype=np.float64).reshape(-1, len(learner_ce))
    out = np.full(len(learner_ce), -1, dtype=np.int64)
    if t.shape[0] == 0:
        return out
    filled = np.where(np.isnan(t), np.inf, t)
    best = filled.argmin(axis=0)
    best_ce = filled[best, np.arange(t.shape[1])]
    ok = best_ce < np.asarray(learner_ce, dtype=np.float64)
    out[ok] = best[ok]
    return out


def align_teachers(
    mask: Tensor, teachers: Sequence[tuple[np.ndarray, np.ndarray] | None]
) -> tuple[Tensor, Tensor, Tensor]:
    """Teacher top-k laid over a student batch's supervised positions.

    ``mask`` [B, K]: the student's supervised positions (contiguous per row); ``teachers[b]``
    the teacher's (indices [n_b, k_b], values [n_b, k_b]) for row b, or None. Sequences are
    aligned at their end (truncation only ever cuts from the left): the last min(n_b, m_b)
    positions. Returns (indices [B, K, k] long, values [B, K, k] float32 with -inf padding,
    kd_mask [B, K] bool)."""
    b_size, width = mask.shape
    k = max((t[0].shape[1] for t in teachers if t is not None and t[0].size), default=1)
    idx = torch.zeros((b_size, width, k), dtype=torch.long)
    val = torch.full((b_size, width, k), float("-inf"))
    kd = torch.zeros((b_size, width), dtype=torch.bool)
    m = mask.cpu()
    for r, t in enumerate(teachers):
        if t is None or t[0].size == 0:
            continue
        pos = torch.nonzero(m[r]).flatten()
        c = min(len(pos), t[0].shape[0])
        if c == 0:
            continue
        pos = pos[len(pos) - c :]
        ti = torch.from_numpy(np.asarray(t[0][-c:], dtype=np.int64))
        tv = torch.from_numpy(np.asarray(t[1][-c:], dtype=np.float32))
        idx[r, pos, : ti.shape[1]] = ti
        val[r, pos, : tv.shape[1]] = tv
        kd[r, pos] = True
    return idx.to(mask.device), val.to(mask.device), kd.to(mask.device)


def topk_distill_loss(
    student_logits: Tensor,
    teacher_indices: Tensor,
    teacher_values: Tensor,
    mask: Tensor | None = None,
    student: StudentNorm = "topk",
) -> Tensor:
    """KL(p_T ‖ q_S) over the teacher's top-k, averaged over the ``mask``ed positions (the
    module doc gives the exact form, ours). Shapes: ``student_logits`` [..., V],
    ``teacher_indices`` / ``teacher_values`` [..., k] (-inf values are padding), ``mask`` [...].

    Teacher ids outside the student's logits (a wider teacher head) count as padding. With no
    position to distil the result is a 0 connected to the graph."""
    v = student_logits.shape[-1]
    tv = teacher_values.to(student_logits.device, torch.float32)
    ti = teacher_indices.to(student_logits.device).long()
    valid = (ti < v) & (ti >= 0) & torch.isfinite(tv)
    if mask is None:
        mask = torch.ones(tv.shape[:-1], dtype=torch.bool, device=tv.device)
    mask = mask.to(tv.device) & valid.any(dim=-1)
    if not bool(mask.any()):
        return student_logits.sum() * 0.0
    s = student_logits[mask].float()  # [N, V]
    ti, tv, valid = ti[mask], tv[mask], valid[mask]
    ti = ti.masked_fill(~valid, 0)
    tv = tv.masked_fill(~valid, float("-inf"))
    log_p = torch.log_softmax(tv, dim=-1)
    p = log_p.exp()
    if student == "topk":
        gathered = s.gather(-1, ti).masked_fill(~valid, float("-inf"))
        log_q = torch.log_softmax(gathered, dim=-1)
    elif student == "full":
        log_q = torch.log_softmax(s, dim=-1).gather(-1, ti)
    else:
        raise ValueError(f"unknown student normalisation {student!r} (topk | full)")
    # padding entries have p = 0; zero their logs so that no inf/nan reaches the gradient
    log_p, log_q = log_p.masked_fill(~valid, 0.0), log_q.masked_fill(~valid, 0.0)
    return (p * (log_p - log_q)).sum(dim=-1).mean()


__all__ = [
    "StudentNorm",
    "TopKLogits",
    "VocabularyMismatchError",
    "align_teachers",
    "cached_vocab_fingerprint",
    "check_same_vocab",
    "compute_topk",
    "min_ce_teacher",
    "topk_distill_loss",
    "topk_on_gold",
    "vocab_fingerprint",
]
