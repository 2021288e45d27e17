"""The one training loop every LaDa step uses (plain SFT, SFT + λ·contrastive, ...).

``train`` knows nothing about data: it walks over batches of *item indices* and asks
``loss_fn(model, indices)`` for the loss. A loss function may also return per-item losses
(aligned with ``indices``); the loop keeps the value from the last time each item was seen.

AdamW (no weight decay on biases/norms), linear warm-up then cosine/linear/constant decay to
``min_lr_ratio * lr``, gradient clipping, seeded, ``model.train()`` during and the previous
mode restored afterwards. On CPU, LoRA dropout draws its masks from 16-bit randoms
(:mod:`lada.accel.lora_dropout`). Step losses stay on the device until the end of the run
(the loop itself never calls ``.item()``, except every 10 steps for the optional progress bar).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from lada.train.optim_config import OptimConfig
from lada.utils.progress import progress_bar

Batches = Sequence[Sequence[int]]
LossOutput = Tensor | tuple[Tensor, Tensor | None]
LossFn = Callable[[nn.Module, list[int]], LossOutput]


@dataclass
class TrainStats:
    steps: int
    seconds: float
    tokens: int  # non-pad tokens processed (0 when unknown)
    step_losses: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    sample_losses: dict[int, float] = field(default_factory=dict)  # last value seen per item
    per_sample_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))  # NaN = never seen

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def final_loss(self) -> float:
        """Mean loss over the last 10 % of steps (NaN without steps)."""
        if not self.step_losses:
            return float("nan")
        k = max(1, len(self.step_losses) // 10)
        return float(np.mean(self.step_losses[-k:]))


def lr_lambda(cfg: OptimConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of ``cfg.lr`` at a given step: linear warm-up, then the chosen decay."""
    warmup = cfg.warmup_steps
    if cfg.warmup_ratio is not None:
        warmup = int(round(cfg.warmup_ratio * total_steps))
    warmup = min(warmup, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup - 1))
        decay = (
            0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
        )
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay

    return factor


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def _epoch_batches(batches: Batches | Callable[[int], Batches], epoch: int) -> Batches:
    return batches(epoch) if callable(batches) else batches


def train(
    model: nn.Module,
    batches: Batches | Callable[[int], Batches],
    loss_fn: LossFn,
    cfg: OptimConfig,
    progress: bool | str = False,
    item_tokens: Sequence[int] | np.ndarray | None = None,
    num_items: int | None = None,
) -> TrainStats:
    """Train ``model`` for ``cfg.epochs`` passes (or ``cfg.max_steps`` steps) over ``batches``.

    ``batches`` is a list of index lists (reused every epoch) or ``epoch -> list`` (e.g. a
    reshuffle per epoch). ``item_tokens[i]`` is the token count of item ``i`` (for tokens/s);
    ``num_items`` sizes ``per_sample_loss`` (default: largest index + 1). Randomness inside
    the loop (dropout) is seeded by ``cfg.seed``; the global RNG state is left untouched.
    """
    from lada.accel.copies import training

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    # a model that autocasts (bf16 on CPU): frozen weights cast once for the run, not per pass;
    # on CPU, LoRA dropout masks from 16-bit randoms (bernoulli_ is slow there)
    with (
        torch.random.fork_rng(devices=devices),
        training(model),
    ):
        torch.manual_seed(cfg.seed)
        return _train(model, batches, loss_fn, cfg, progress, item_tokens, num_items)


def _train(
    model: nn.Module,
    batches: Batches | Callable[[int], Batches],
    loss_fn: LossFn,
    cfg: OptimConfig,
    progress: bool,
    item_tokens: Sequence[int] | np.ndarray | None,
    num_items: int | None,
) -> TrainStats:
    first = _epoch_batches(batches, 0)
    total = cfg.max_steps if cfg.max_steps is not None else len(first) * cfg.epochs
    total = min(total, cfg.steps_cap) if cfg.steps_cap is not None else total
    total = total if len(first) > 0 else 0
    tokens_of = None if item_tokens is None else np.asarray(item_tokens, dtype=np.int64)
    label = progress if isinstance(progress, str) else "train"
    with progress_bar(label, total if progress else 0) as bar:
        return _train_steps(model, batches, loss_fn, cfg, bar, first, total, tokens_of, num_items)


def _train_steps(model, batches, loss_fn, cfg, bar, first, total, tokens_of, num_items):
    opt = make_optimizer(model, cfg) if total > 0 else None
    params = [p for g in opt.param_groups for p in g["params"]] if opt else []
    factor = lr_lambda(cfg, total)
    step, tokens, epoch, max_index = 0, 0, 0, -1
    losses: list[Tensor] = []
    lrs: list[float] = []
    pending: list[tuple[list[int], Tensor]] = []
    sample_losses: dict[int, float] = {}
    was_training = model.training
    model.train()
    t0 = time.perf_counter()
    try:
        while step < total:
            for idx in first if epoch == 0 else _epoch_batches(batches, epoch):
                if step >= total:
                    break
                idx = list(idx)
                lr = cfg.lr * factor(step)
                for group in opt.param_groups:
                    group["lr"] = lr
                out = loss_fn(model, idx)
                loss, per_item = out if isinstance(out, tuple) else (out, None)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.detach())
                lrs.append(lr)
                if per_item is not None:
                    pending.append((idx, per_item.detach()))
                if tokens_of is not None:
                    tokens += int(tokens_of[idx].sum())
                max_index = max(max_index, max(idx))
                step += 1
                bar.advance()
                if step % 10 == 0 and bar.progress is not None:
                    _show_rate(bar, losses, tokens, t0)
            sample_losses.update(_resolve(pending))
            pending.clear()
            epoch += 1
    finally:
        seconds = time.perf_counter() - t0
        model.train(was_training)

    n = num_items if num_items is not None else max_index + 1
    per_sample = np.full(max(n, 0), np.nan)
    for i, v in sample_losses.items():
        if 0 <= i < n:
            per_sample[i] = v
    step_losses = torch.stack(losses).float().cpu().tolist() if losses else []
    return TrainStats(step, seconds, tokens, step_losses, lrs, sample_losses, per_sample)


def _resolve(pending: list[tuple[list[int], Tensor]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for idx, values in pending:  # later batches overwrite earlier ones: "last pass" wins
        out.update(zip(idx, values.float().cpu().tolist(), strict=True))
    return out


def _show_rate(bar, losses: list[Tensor], tokens: int, t0: float) -> None:
    recent = torch.stack(losses[-10:]).mean().item()  # one host sync per 10 steps
    rate = tokens / max(time.perf_counter() - t0, 1e-9)
    bar.info(f"loss {recent:.3f}  {rate:,.0f} tok/s" if tokens else f"loss {recent:.3f}")
