"""FedCoT / distilling step-by-step (Hsieh et al. 2023) as a host (spec §6).

The LLM writes a reasoning path (rationale lines, then one ``Answer:`` line,
``lada.data.sample``) for each public question an SLM picks. Each SLM learns as FATE-LLM's
FedCoT client does, through two tasks with separate inputs (:mod:`lada.train.two_task`):
predict (``"Predict:\\n" + question`` → the answer line) and explain (``"Explain:\\n" +
question`` → the rationale), with

    L_host = (1 − α)·L_label + α·L_rationale            (α = ``hosts.fedcot.alpha``, 0.5)

in its local step on its private samples (their gold rationales) and in its distillation step
on the LLM's paths (and its private rehearsal). It answers with the predict prefix
(:meth:`FedCoTHost.slm_prompt`), at evaluation too.

With LaDa, the LLM's transfer is restricted to each SLM's picks and λ·L_CD (on the whole paths,
under the plain prompt) is added to L_host. FedCoT's privacy-preserving inference on client
queries is not part of this host: the LLM answers public questions only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from torch import Tensor

from lada.federation.host import Host, bind_handlers
from lada.federation.protocol import DistillIns, DistillRes, LocalTrainIns, LocalTrainRes, Task
from lada.hosts.fedcot_config import FedCoTConfig
from lada.hosts.registry import register_host
from lada.train.two_task import (
    EXPLAIN_PREFIX,
    PREDICT_PREFIX,
    predict_prompt,
    split_rationale,
    two_task_batch_loss,
)


def fedcot_batch_loss(batch: Any, paths: Sequence[str], alpha: float) -> Tensor:
    """L_host of a path-distillation step's batch (a :class:`lada.train.distill.PathBatch`):
    :func:`lada.train.two_task.two_task_batch_loss` on its items, ``paths[i]`` the preferred
    path of item i; items with weight 0 (not to be learned) are left out."""
    if batch.score is None or len(batch.prompts) != len(batch.idx):
        raise ValueError("FedCoT's loss needs the batch's prompts and scorer (PathBatch)")
    rows = [r for r in range(len(batch.idx)) if float(batch.weight[r]) > 0]
    return two_task_batch_loss(
        batch.score,
        [batch.prompts[r] for r in rows],
        [paths[batch.idx[r]] for r in rows],
        alpha,
        zero=batch.seq.sum() * 0.0,
    )


def client_distill(role: Any, ins: DistillIns) -> DistillRes:
    """FedCoT's distillation step (the client's own, :meth:`ClientRole.distill`, with
    FedCoT's L_host), reporting as each pick's loss before and after the step its two-task loss
    on the LLM's path (:func:`lada.train.two_task.two_task_sample_losses`): what the step
    trains, hence what LaDa's reward measures. A pick whose path has neither an answer line nor
    a rationale keeps the step's own value (its whole path's NLL)."""
    from lada.train.two_task import two_task_sample_losses

    ids = list(ins.ids)
    if not ids:
        return role.distill(ins)
    role.enter_round(ins.round)
    alpha = role.host.settings.alpha
    prompts = [role.public[i].prompt() for i in ids]
    paths = list(ins.teacher_paths)
    max_length = role.settings.distill.slm_optim.max_length

    def losses() -> np.ndarray:
        return two_task_sample_losses(role.model, role.tokenizer, prompts, paths, alpha, max_length)

    before = losses()
    res = role.distill(ins)
    after = losses()
    keep = np.isnan(before)
    return replace(
        res,
        loss_before=np.where(keep, res.loss_before, before).astype(np.float32),
        loss_after=np.where(keep, res.loss_after, after).astype(np.float32),
    )


def client_local_train(role: Any, ins: LocalTrainIns) -> LocalTrainRes:
    """FedCoT's local step: the SLM learns its private samples (prompt → gold path) as the two
    tasks (:func:`lada.train.two_task.two_task_sft`, ``local.optim``)."""
    from lada.train.two_task import two_task_sft

    role.enter_round(ins.round)
    seed = role.task_seed(ins.round, "local_train")
    stats = two_task_sft(
        role.model,
        role.tokenizer,
        [s.prompt() for s in role.train],
        [s.target() for s in role.train],
        role.host.settings.alpha,
        replace(role.settings.local.optim, seed=seed),
    )
    if role.settings.rehearse_after_local:
        role.rehearse(ins.round)
    seen = stats.per_sample_loss[~np.isnan(stats.per_sample_loss)]
    return LocalTrainRes(
        num_samples=len(role.train),
        mean_loss=float(seen.mean()) if seen.size else float("nan"),
    )


@register_host
class FedCoTHost(Host):
    """FedCoT / distilling step-by-step: the LLM writes rationales for public questions and
    each SLM learns them, and its private samples in its local step, as two tasks with
    separate inputs, predict and explain; one direction only (LLM → SLM). Its SLMs answer with
    the predict prefix."""

    name = "fedcot"
    directions = ("S",)
    settings_class = FedCoTConfig  # hosts.fedcot
    settings: FedCoTConfig

    def host_loss(self, cfg: Any, tokenizer: Any, preferred: Sequence[str]) -> Any:
        alpha = self.settings.alpha
        paths = list(preferred)

        def loss(b: Any) -> Tensor:
            return fedcot_batch_loss(b, paths, alpha)

        return loss

    def slm_prompt(self, prompt: str) -> str:
        return predict_prompt(prompt)

    def client_handlers(self, role: Any) -> Mapping[str, Any]:
        return bind_handlers(
            role, {Task.LOCAL_TRAIN: client_local_train, Task.DISTILL: client_distill}
        )


__all__ = [
    "EXPLAIN_PREFIX",
    "PREDICT_PREFIX",
    "FedCoTConfig",
    "FedCoTHost",
    "client_distill",
    "client_local_train",
    "fedcot_batch_loss",
    "split_rationale",
]
