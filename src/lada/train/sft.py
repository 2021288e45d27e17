"""Supervised fine-tuning on prompt -> target pairs (loss on target tokens + EOS only).

Texts are tokenised once; each step only pads pre-tokenised ids into a tensor. Batches are
length-bucketed (reshuffled every epoch), which removes most padding.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from lada.train.batching import collate, encode_pairs, length_bucketed_batches
from lada.train.logprobs import target_token_logprobs
from lada.train.loop import OptimConfig, TrainStats, train


def sft(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    targets: Sequence[str],
    cfg: OptimConfig,
    progress: bool | str = False,
) -> TrainStats:
    """Fine-tune ``model`` on ``prompt -> target``; ``per_sample_loss`` is aligned with the inputs.

    The step loss is the mean NLL over all target tokens of the batch; the per-sample loss is
    each sample's mean target-token NLL from the last time it was seen. ``progress``: a bar
    (its label when a string) with the running loss (:mod:`lada.utils.progress`).
    """
    encoded = encode_pairs(tokenizer, prompts, targets, cfg.max_length)
    lengths = [len(ids) for ids, _ in encoded]
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )

    def batches(epoch: int) -> list[list[int]]:
        return length_bucketed_batches(lengths, cfg.batch_size, seed=cfg.seed + epoch)

    def loss_fn(m: nn.Module, idx: list[int]) -> tuple[Tensor, Tensor]:
        logp, mask = target_token_logprobs(m, collate([encoded[i] for i in idx], pad_id))
        counts = mask.sum(dim=1)
        nll = -logp.sum(dim=1)
        return nll.sum() / counts.sum().clamp(min=1), nll / counts.clamp(min=1)

    return train(
        model, batches, loss_fn, cfg, progress=progress, item_tokens=lengths, num_items=len(encoded)
    )
