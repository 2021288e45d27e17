"""FedCoT / distilling step-by-step loss: α·L_rationale + (1 − α)·L_label (spec §6).

A path is rationale lines followed by one ``Answer:`` line (``lada.data.sample``). On the
learner's tokens of a path (target tokens + EOS):

- L_label is the mean token NLL of the final ``Answer:`` line and the EOS token;
- L_rationale is the mean token NLL of every target token before it (the rationale lines);

both averaged over the tokens of the batch, then mixed with α (0.5 by default). A path without
rationale lines has L_rationale = 0 for that row (its tokens are all label tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lada.data.sample import ANSWER_PREFIX
from lada.federation.host import Host
from lada.hosts.fedcot_config import FedCoTConfig
from lada.hosts.registry import register_host


def split_rationale(path: str) -> tuple[str, str]:
    """(rationale, answer line): the answer line is the last line starting with ``Answer:``."""
    lines = path.rstrip().split("\n")
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip().startswith(ANSWER_PREFIX):
            return "\n".join(lines[:i]), "\n".join(lines[i:])
    return path, ""


def label_token_counts(tokenizer, paths: Sequence[str]) -> list[int]:
    """Number of trailing target tokens of each path (EOS included) that form its label:
    the answer line tokenised on its own (with a newline tokeniser this equals its share of
    the joint tokenisation), plus 1 for EOS."""
    eos = 1 if tokenizer.eos_token_id is not None else 0
    answers = [split_rationale(p)[1] for p in paths]
    ids = tokenizer(answers, add_special_tokens=False)["input_ids"] if answers else []
    return [len(x) + eos for x in ids]


def label_mask(mask: Tensor, n_label: Tensor) -> Tensor:
    """[B, K] bool: the last ``n_label[b]`` supervised positions of each row."""
    m = mask.long()
    from_end = m.flip(1).cumsum(1).flip(1)  # supervised tokens at or after each position
    return mask & (from_end <= n_label.to(mask.device).unsqueeze(1))


def fedcot_loss(
    logp: Tensor, mask: Tensor, n_label: Tensor, alpha: float = 0.5, weight: Tensor | None = None
) -> Tensor:
    """α·L_rationale + (1 − α)·L_label from per-token log-probs ``logp`` [B, K] (0 off mask).

    ``weight`` [B] (0/1) leaves rows out (samples that must not be learned)."""
    if weight is not None:
        mask = mask & (weight.to(mask.device) > 0).unsqueeze(1)
    lab = label_mask(mask, n_label)
    rat = mask & ~lab
    nll = -logp
    l_rat = (nll * rat).sum() / rat.sum().clamp(min=1)
    l_lab = (nll * lab).sum() / lab.sum().clamp(min=1)
    return alpha * l_rat + (1 - alpha) * l_lab


def fedcot_reference(
    token_nll: Sequence[Sequence[float]], n_label: Sequence[int], alpha: float
) -> float:
    """Plain-Python version of :func:`fedcot_loss` (documentation and tests)."""
    rat = [v for row, n in zip(token_nll, n_label, strict=True) for v in row[: len(row) - n]]
    lab = [v for row, n in zip(token_nll, n_label, strict=True) for v in row[len(row) - n :]]
    l_rat = sum(rat) / max(len(rat), 1)
    l_lab = sum(lab) / max(len(lab), 1)
    return alpha * l_rat + (1 - alpha) * l_lab


@register_host
class FedCoTHost(Host):
    """FedCoT / distilling step-by-step: the LLM writes rationales for public questions and
    each SLM learns α·L_rationale + (1 − α)·L_label; one direction only (LLM → SLM)."""

    name = "fedcot"
    directions = ("S",)
    settings_class = FedCoTConfig  # hosts.fedcot
    settings: FedCoTConfig

    def host_loss(self, cfg: Any, tokenizer: Any, preferred: Sequence[str]) -> Any:
        alpha = self.settings.alpha
        n_label = torch.as_tensor(label_token_counts(tokenizer, preferred))

        def loss(b: Any) -> Tensor:
            return fedcot_loss(b.logp, b.mask, n_label[b.idx], alpha, weight=b.weight)

        return loss


__all__ = [
    "FedCoTConfig",
    "FedCoTHost",
    "fedcot_loss",
    "fedcot_reference",
    "label_mask",
    "label_token_counts",
    "split_rationale",
]
