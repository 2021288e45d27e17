"""FedCoT / distilling step-by-step (Hsieh et al. 2023) as a host (spec §6).

The LLM writes a reasoning path (rationale lines, then one ``Answer:`` line,
``lada.data.sample``) for each public question an SLM picks. The SLM learns it as two tasks
with separate inputs, as FATE-LLM's FedCoT client does:

=========  ===================================  ===========================================
task       input                                target
=========  ===================================  ===========================================
predict    ``"Predict:\\n" + prompt``           the answer line (the label), then EOS
explain    ``"Explain:\\n" + prompt``           the rationale lines, then EOS
=========  ===================================  ===========================================

    L_host = (1 − α)·L_label + α·L_rationale            (α = ``distill.fedcot_alpha``, 0.5)

each term the mean token NLL over its task's target tokens in the batch (a causal LM's loss on
a batch of that task alone). A path without rationale lines gives no explain row, one without
an answer line no predict row. At evaluation the SLM is asked with the predict prefix
(:meth:`FedCoTHost.slm_prompt`): it answers directly, the rationale being a training signal
only.

With LaDa, λ·L_CD is added to this loss on the full paths (the plain prompt), and the LLM's
transfer is restricted to each SLM's picks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from lada.config.overrides import ConfigError
from lada.data.sample import ANSWER_PREFIX
from lada.federation.host import Host
from lada.hosts.registry import register_host

PREDICT_PREFIX = "Predict:\n"  # FATE-LLM's FedCoT templates
EXPLAIN_PREFIX = "Explain:\n"


def split_rationale(path: str) -> tuple[str, str]:
    """(rationale, answer line): the answer line is the last line starting with ``Answer:``."""
    lines = path.rstrip().split("\n")
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip().startswith(ANSWER_PREFIX):
            return "\n".join(lines[:i]).strip(), lines[i].strip()
    return path.strip(), ""


def predict_prompt(prompt: str) -> str:
    """The predict task's input for a question's prompt."""
    return PREDICT_PREFIX + prompt


def explain_prompt(prompt: str) -> str:
    """The explain (rationale) task's input for a question's prompt."""
    return EXPLAIN_PREFIX + prompt


@dataclass(frozen=True)
class TwoTasks:
    """The two tasks of a batch: (input, target) rows of each, and the batch rows they came
    from (a row without rationale lines has no explain task, one without an answer line no
    predict task)."""

    predict: list[tuple[str, str]]
    explain: list[tuple[str, str]]
    predict_rows: list[int]
    explain_rows: list[int]


def two_tasks(prompts: Sequence[str], paths: Sequence[str]) -> TwoTasks:
    """Distilling step-by-step's inputs: each (prompt, path) as a predict row (prefixed prompt
    → answer line) and an explain row (prefixed prompt → rationale)."""
    out = TwoTasks([], [], [], [])
    for r, (prompt, path) in enumerate(zip(prompts, paths, strict=True)):
        rationale, answer = split_rationale(path)
        if answer:
            out.predict.append((predict_prompt(prompt), answer))
            out.predict_rows.append(r)
        if rationale:
            out.explain.append((explain_prompt(prompt), rationale))
            out.explain_rows.append(r)
    return out


def token_mean_nll(logp: Tensor, mask: Tensor) -> Tensor:
    """Mean NLL over the supervised tokens of a batch (a causal LM's loss on it)."""
    return -(logp * mask).sum() / mask.sum().clamp(min=1)


def two_task_loss(l_label: Tensor, l_rationale: Tensor, alpha: float) -> Tensor:
    """Distilling step-by-step's L = (1 − α)·L_label + α·L_rationale."""
    return (1.0 - alpha) * l_label + alpha * l_rationale


def fedcot_batch_loss(batch: Any, paths: Sequence[str], alpha: float) -> Tensor:
    """:func:`two_task_loss` on one batch of a path-distillation step
    (a :class:`lada.train.distill.PathBatch`), ``paths[i]`` the preferred path of item i.

    Items with weight 0 (not to be learned) are left out; a task with no rows in the batch (or
    weight 0 in α) adds nothing. Each task runs as its own forward pass (``batch.score``)."""
    if batch.score is None or len(batch.prompts) != len(batch.idx):
        raise ValueError("FedCoT's loss needs the batch's prompts and scorer (PathBatch)")
    rows = [r for r in range(len(batch.idx)) if float(batch.weight[r]) > 0]
    tasks = two_tasks([batch.prompts[r] for r in rows], [paths[batch.idx[r]] for r in rows])
    zero = batch.seq.sum() * 0.0  # keeps the graph when a term is absent
    l_label = l_rationale = zero
    if alpha < 1 and tasks.predict:
        l_label = token_mean_nll(*batch.score(*zip(*tasks.predict, strict=True)))
    if alpha > 0 and tasks.explain:
        l_rationale = token_mean_nll(*batch.score(*zip(*tasks.explain, strict=True)))
    return two_task_loss(l_label, l_rationale, alpha)


@dataclass(frozen=True)
class FedCoTConfig:
    """FedCoT's settings (read from ``distill.fedcot_alpha``, where run configs keep it)."""

    alpha: float = 0.5  # (1 − α)·L_label + α·L_rationale [distilling step-by-step: 0.5]

    @classmethod
    def from_distill(cls, distill: Any) -> FedCoTConfig:
        return cls(alpha=distill.fedcot_alpha)

    def check(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"distill.fedcot_alpha: {self.alpha} is not in [0, 1]")


@register_host
class FedCoTHost(Host):
    """FedCoT / distilling step-by-step: the LLM writes rationales for public questions and
    each SLM learns them as two tasks, predict and explain, with separate inputs; one
    direction only (LLM → SLM). Its SLMs answer with the predict prefix."""

    name = "fedcot"
    directions = ("S",)

    def check(self, cfg: Any) -> None:
        FedCoTConfig.from_distill(cfg.distill).check()

    def host_loss(self, cfg: Any, tokenizer: Any, preferred: Sequence[str]) -> Any:
        alpha = FedCoTConfig.from_distill(cfg).alpha
        paths = list(preferred)

        def loss(b: Any) -> Tensor:
            return fedcot_batch_loss(b, paths, alpha)

        return loss

    def slm_prompt(self, prompt: str) -> str:
        return predict_prompt(prompt)


__all__ = [
    "EXPLAIN_PREFIX",
    "PREDICT_PREFIX",
    "FedCoTConfig",
    "FedCoTHost",
    "TwoTasks",
    "explain_prompt",
    "fedcot_batch_loss",
    "predict_prompt",
    "split_rationale",
    "token_mean_nll",
    "two_task_loss",
    "two_tasks",
]
