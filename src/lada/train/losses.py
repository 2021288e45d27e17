"""LaDa's contrastive reasoning distillation (spec §4) and the choice of preferred path.

Inputs are per-sample *sequence* log-probabilities log pi(y|x) = sum_t log pi(y_t | x, y_<t)
with prompt and padding masked (e.g. ``lada.train.logprobs.sequence_logprobs``); each model
scores text with its own tokenizer, so no token alignment is needed.

    margin_i = beta*[(log pi(y_pref|x) - log pi_ref(y_pref|x)) - (log pi(y_rej|x) - log pi_ref(y_rej|x))]
    L_CD     = -log sigma(margin_i)
    L        = L_host + lambda*L_CD

``distill.cd_norm="mean"`` (ours; :func:`path_logprob`) puts the per-token mean log pi in the
margin instead of the sum: the scale of the token-mean SFT term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Reduction = Literal["mean", "sum", "none"]
PreferenceMode = Literal["role", "correctness"]
CdNorm = Literal["sum", "mean"]


def path_logprob(logprob_sum: Tensor, num_tokens: Tensor, norm: CdNorm = "sum") -> Tensor:
    """The log pi(y|x) that enters L_CD's margin (``distill.cd_norm``).

    ``"sum"`` (spec): the sequence log-probability sum_t log pi(y_t | x, y_<t). ``"mean"``
    (ours): the same divided by the path's number of target tokens, i.e. the per-token mean,
    the scale of the SFT term (a token mean): with "sum" one pair of ~50-token paths weighs
    about 50x more per token in L_host + λ·L_CD than with "mean". ``num_tokens`` is clamped to
    at least 1.
    """
    if norm == "sum":
        return logprob_sum
    if norm == "mean":
        return logprob_sum / num_tokens.clamp(min=1).to(logprob_sum.dtype)
    raise ValueError(f"unknown distill.cd_norm {norm!r} (known: sum, mean)")


def contrastive_margin(
    policy_pref: Tensor,
    policy_rej: Tensor,
    ref_pref: Tensor,
    ref_rej: Tensor,
    beta: float = 0.1,
    floor: Tensor | None = None,
) -> Tensor:
    """Per-sample margin beta*[(pi - ref)(y_pref) - (pi - ref)(y_rej)] (reference detached).

    Also the "margin" learnability signal g_i of the filter reward (spec §3).

    ``floor`` (ours, a bool mask per sample; ``distill.llm_unlabelled_cd: floor``): where True
    the rejected term is ``max(0, (pi - ref)(y_rej))``, so the loss lowers the rejected path
    only while it is more likely than under the reference and never pushes it below; the margin
    then grows through the preferred path alone.
    """
    pref = policy_pref - ref_pref.detach()
    rej = policy_rej - ref_rej.detach()
    if floor is not None:
        rej = torch.where(floor.to(rej.device), torch.relu(rej), rej)
    return beta * (pref - rej)


def contrastive_distill_loss(
    policy_pref: Tensor,
    policy_rej: Tensor,
    ref_pref: Tensor,
    ref_rej: Tensor,
    beta: float = 0.1,
    reduction: Reduction = "mean",
    floor: Tensor | None = None,
) -> Tensor:
    """L_CD = -log sigma(margin) per sample (spec §4), reduced by ``reduction``; ``floor`` as
    in :func:`contrastive_margin`.

    Uses ``F.logsigmoid`` for stability. With zero pairs, "mean"/"sum" return a 0 that stays
    connected to the graph (ours), so a caller may always add it to its loss.
    """
    losses = -F.logsigmoid(
        contrastive_margin(policy_pref, policy_rej, ref_pref, ref_rej, beta, floor)
    )
    if reduction == "none":
        return losses
    if reduction == "sum" or losses.numel() == 0:
        return losses.sum()
    if reduction == "mean":
        return losses.mean()
    raise ValueError(f"unknown reduction {reduction!r}")


def lada_total_loss(host_loss: Tensor, cd_loss: Tensor, lam: float = 1.0) -> Tensor:
    """L = L_host + lambda*L_CD (spec §4; lambda default 1.0)."""
    return host_loss + lam * cd_loss


@dataclass(frozen=True)
class PreferencePairs:
    """The kept (preferred, rejected) pairs, aligned lists.

    ``indices``: positions in the caller's input lists; ``teacher_preferred[j]``: whether pair j
    prefers the teacher's path (False: the learner's own path is preferred).
    """

    indices: list[int]
    preferred: list[str]
    rejected: list[str]
    teacher_preferred: list[bool]

    def __len__(self) -> int:
        return len(self.indices)


def _is_correct(answer: str | None, gold: str | None) -> bool:
    return answer is not None and gold is not None and answer.strip() == gold.strip()


def choose_preference(
    teacher_texts: Sequence[str],
    own_texts: Sequence[str],
    teacher_answers: Sequence[str | None] | None = None,
    own_answers: Sequence[str | None] | None = None,
    gold_answers: Sequence[str | None] | None = None,
    mode: PreferenceMode = "role",
    skip_identical: bool = True,
) -> PreferencePairs:
    """Which of each pair of paths the learner should prefer (spec §4).

    ``mode="role"`` (spec): always the teacher's path (for an SLM the LLM's path, for the LLM
    the SLM's path). ``mode="correctness"`` (spec's inferred option): the path whose extracted
    final answer equals the gold answer (compared after ``strip``); if both or neither are
    correct, or the gold is unknown (None), fall back to the role rule (ours).
    ``skip_identical`` drops pairs whose two paths are equal after ``strip``.
    """
    n = len(teacher_texts)
    if len(own_texts) != n:
        raise ValueError("teacher_texts and own_texts must have the same length")
    if mode == "correctness":
        if teacher_answers is None or own_answers is None or gold_answers is None:
            raise ValueError('mode "correctness" needs teacher_answers, own_answers, gold_answers')
        if not len(teacher_answers) == len(own_answers) == len(gold_answers) == n:
            raise ValueError("answer lists must match the number of pairs")
    elif mode != "role":
        raise ValueError(f"unknown mode {mode!r}")
    out = PreferencePairs([], [], [], [])
    for i in range(n):
        teacher, own = teacher_texts[i], own_texts[i]
        if skip_identical and teacher.strip() == own.strip():
            continue
        teacher_first = True
        if mode == "correctness":
            t_ok = _is_correct(teacher_answers[i], gold_answers[i])  # type: ignore[index]
            o_ok = _is_correct(own_answers[i], gold_answers[i])  # type: ignore[index]
            if o_ok and not t_ok:
                teacher_first = False
        out.indices.append(i)
        out.preferred.append(teacher if teacher_first else own)
        out.rejected.append(own if teacher_first else teacher)
        out.teacher_preferred.append(teacher_first)
    return out
