"""Distilling step-by-step's two tasks (Hsieh et al. 2023), as FATE-LLM's FedCoT client
trains them: one question, two inputs told apart by a task prefix.

=========  ===================================  ===========================================
task       input                                target
=========  ===================================  ===========================================
predict    ``"Predict:\\n" + prompt``           the path's answer line (the label), then EOS
explain    ``"Explain:\\n" + prompt``           the path's rationale lines, then EOS
=========  ===================================  ===========================================

    L = (1 − α)·L_label + α·L_rationale                                 (:func:`two_task_loss`)

each term the mean token NLL over its task's target tokens in the batch, from its own forward
pass (a causal LM's loss on a batch of that task alone). A path without rationale lines gives
no explain row, one without an answer line no predict row. The model answers a question with
the predict prefix; the rationale is a training signal only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lada.data.sample import ANSWER_PREFIX
from lada.train.batching import Encoded, collate, encode_pairs, length_bucketed_batches
from lada.train.logprobs import target_token_logprobs
from lada.train.loop import OptimConfig, TrainStats, train

PREDICT_PREFIX = "Predict:\n"  # FATE-LLM's FedCoT templates
EXPLAIN_PREFIX = "Explain:\n"

# (prompts, targets) -> the learner's per-token (logp, mask) of each target given its prompt
Scorer = Callable[[Sequence[str], Sequence[str]], tuple[Tensor, Tensor]]


def split_rationale(path: str) -> tuple[str, str]:
    """(rationale, answer line): the answer line is the last line starting with ``Answer:``;
    ``""`` for a part the path lacks."""
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
    """The two tasks of some (prompt, path) items: (input, target) rows of each, and the items
    they came from."""

    predict: list[tuple[str, str]]
    explain: list[tuple[str, str]]
    predict_rows: list[int]
    explain_rows: list[int]


def two_tasks(prompts: Sequence[str], paths: Sequence[str]) -> TwoTasks:
    """Each (prompt, path) as a predict row (prefixed prompt → answer line) and an explain row
    (prefixed prompt → rationale), each only where the path has that part."""
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


def two_task_batch_loss(
    score: Scorer, prompts: Sequence[str], paths: Sequence[str], alpha: float, zero: Tensor
) -> Tensor:
    """:func:`two_task_loss` on one batch of (prompt, path) items: the predict rows and the
    explain rows each in one forward pass (``score``). A task without rows in the batch, or
    with weight 0 in α, is not run and adds nothing (``zero``: a 0 on the graph)."""
    tasks = two_tasks(prompts, paths)
    l_label = l_rationale = zero
    if alpha < 1 and tasks.predict:
        l_label = token_mean_nll(*score(*zip(*tasks.predict, strict=True)))
    if alpha > 0 and tasks.explain:
        l_rationale = token_mean_nll(*score(*zip(*tasks.explain, strict=True)))
    return two_task_loss(l_label, l_rationale, alpha)


def two_task_sft(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    paths: Sequence[str],
    alpha: float,
    cfg: OptimConfig,
    progress: bool | str = False,
) -> TrainStats:
    """Fine-tune ``model`` on ``prompt -> path`` as the two tasks, batch loss
    :func:`two_task_loss` (texts tokenised once, batches length-bucketed and reshuffled every
    epoch, as :func:`lada.train.sft.sft`). ``per_sample_loss[i]``: item i's
    (1 − α)·(mean NLL of its answer) + α·(mean NLL of its rationale) the last time it was seen
    (a missing part counts 0); items with neither part are not trained (NaN)."""
    n = len(prompts)
    tasks = two_tasks(prompts, paths)
    use_p, use_e = alpha < 1, alpha > 0
    enc_p = encode_pairs(tokenizer, *_columns(tasks.predict), cfg.max_length) if use_p else []
    enc_e = encode_pairs(tokenizer, *_columns(tasks.explain), cfg.max_length) if use_e else []
    p_of = _row_of(n, tasks.predict_rows if use_p else [])
    e_of = _row_of(n, tasks.explain_rows if use_e else [])
    lengths = [
        (len(enc_p[p_of[i]][0]) if p_of[i] >= 0 else 0)
        + (len(enc_e[e_of[i]][0]) if e_of[i] >= 0 else 0)
        for i in range(n)
    ]
    active = [i for i in range(n) if lengths[i] > 0]
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )

    def task_nll(m: nn.Module, enc: list[Encoded], of: np.ndarray, idx: list[int]):
        """(the task's batch loss, each item's mean token NLL, 0 where it has no row)."""
        items = [i for i in idx if of[i] >= 0]
        if not items:
            return None, torch.zeros(len(idx))
        logp, mask = target_token_logprobs(m, collate([enc[of[i]] for i in items], pad_id))
        per_row = -logp.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        per_item = torch.zeros(len(idx), device=per_row.device)
        per_item[[idx.index(i) for i in items]] = per_row
        return token_mean_nll(logp, mask), per_item

    def loss_fn(m: nn.Module, idx: list[int]) -> tuple[Tensor, Tensor]:
        l_lab, item_lab = task_nll(m, enc_p, p_of, idx)
        l_rat, item_rat = task_nll(m, enc_e, e_of, idx)
        zero = next(iter(t for t in (l_lab, l_rat) if t is not None)) * 0.0
        loss = two_task_loss(
            zero if l_lab is None else l_lab, zero if l_rat is None else l_rat, alpha
        )
        per_item = two_task_loss(item_lab.to(zero.device), item_rat.to(zero.device), alpha)
        return loss, per_item

    act_len = [lengths[i] for i in active]

    def batches(epoch: int) -> list[list[int]]:
        return [
            [active[j] for j in b]
            for b in length_bucketed_batches(act_len, cfg.batch_size, seed=cfg.seed + epoch)
        ]

    return train(model, batches, loss_fn, cfg, progress=progress, item_tokens=lengths, num_items=n)


def two_task_sample_losses(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    paths: Sequence[str],
    alpha: float,
    max_length: int,
    batch_size: int = 64,
) -> np.ndarray:
    """Each item's own two-task loss, without gradients: (1 − α)·(mean token NLL of its answer
    line given the predict input) + α·(mean token NLL of its rationale given the explain
    input), a part the path lacks counting 0 (as in training); NaN where it has neither."""
    from lada.train.logprobs import score_texts

    n = len(prompts)
    tasks = two_tasks(prompts, paths)
    out = np.zeros(n, dtype=np.float64)
    has = np.zeros(n, dtype=bool)
    for rows, items, weight in (
        (tasks.predict, tasks.predict_rows, 1.0 - alpha),
        (tasks.explain, tasks.explain_rows, alpha),
    ):
        if not rows:
            continue
        nll = score_texts(
            model, tokenizer, *_columns(rows), batch_size=batch_size, max_length=max_length
        )["mean_nll"]
        out[items] += weight * nll
        has[items] = True
    out[~has] = np.nan
    return out


def _columns(rows: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [a for a, _ in rows], [b for _, b in rows]


def _row_of(n: int, rows: Sequence[int]) -> np.ndarray:
    """item → its row in a task (-1: none)."""
    of = np.full(n, -1, dtype=np.int64)
    of[list(rows)] = np.arange(len(rows))
    return of


__all__ = [
    "EXPLAIN_PREFIX",
    "PREDICT_PREFIX",
    "Scorer",
    "TwoTasks",
    "explain_prompt",
    "predict_prompt",
    "split_rationale",
    "token_mean_nll",
    "two_task_batch_loss",
    "two_task_loss",
    "two_task_sample_losses",
    "two_task_sft",
    "two_tasks",
]
