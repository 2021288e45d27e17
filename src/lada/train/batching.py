"""Tokenising prompt/target pairs once, padding them into batches, and length bucketing.

Token layout of one training example (no special tokens added by the tokenizer itself):

    [bos] prompt tokens | target tokens [eos]
    \\__ n_prompt ___/   \\__ supervised (labels) __/

Prompt and target are tokenised *separately*, so the prompt tokens are exactly the ones a
model sees at generation time (:func:`encode_prompts` is shared with ``lada.eval.generate``).
A target's text never becomes a special token: ``</s>`` written in a path is plain text, and
only the EOS appended here ends it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
Encoded = tuple[list[int], int]  # (input_ids, n_prompt_tokens)


def _token_ids(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], plain: bool = False
) -> list[list[int]]:
    """Token ids of ``texts``; ``plain``: a special token's text in them (``</s>``, a chat
    delimiter) stays plain text (``split_special_tokens``), as for a target that may come from
    another party (a client's reasoning path)."""
    if not texts:
        return []
    extra = {"split_special_tokens": True} if plain else {}
    return tokenizer(list(texts), add_special_tokens=False, **extra)["input_ids"]


def use_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether prompts are wrapped in the tokenizer's chat template (set at load time by
    :func:`lada.models.loading.set_chat_template_mode`; off for tokenizers without one)."""
    return bool(getattr(tokenizer, "lada_chat", False))


def chat_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
    """``prompt`` as one user turn in the tokenizer's chat template, ready for the reply."""
    messages = [{"role": "user", "content": prompt.rstrip("\n")}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]) -> list[list[int]]:
    """Prompt token ids: ``[bos]`` (when the tokenizer has one) + the prompt's tokens; with a
    chat template (:func:`use_chat_template`), the templated user turn instead (its own
    special tokens, no extra bos). Training targets follow either form and end with EOS."""
    if use_chat_template(tokenizer):
        return _token_ids(tokenizer, [chat_prompt(tokenizer, p) for p in prompts])
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return [bos + ids for ids in _token_ids(tokenizer, prompts)]


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    targets: Sequence[str],
    max_length: int,
) -> list[Encoded]:
    """Tokenise ``prompt + target + eos`` pairs; returns ``(input_ids, n_prompt_tokens)`` each.

    Truncation rule when a pair is longer than ``max_length``: the prompt loses tokens from its
    left (its last token is always kept); if the target plus EOS still does not fit, the target
    loses tokens from its left too, so the supervised end (answer line and EOS) is never cut.
    """
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    out: list[Encoded] = []
    for p, t in zip(
        encode_prompts(tokenizer, prompts), _token_ids(tokenizer, targets, plain=True), strict=True
    ):
        t = t + eos
        if len(p) + len(t) > max_length:
            t = t[-(max_length - 1) :]
            p = p[-(max_length - len(t)) :]
        out.append((p + t, len(p)))
    return out


def collate(
    encoded: Sequence[Encoded], pad_id: int, pad_to_multiple_of: int = 1
) -> dict[str, torch.Tensor]:
    """Right-pad a batch: ``input_ids``, ``attention_mask`` and ``labels`` (-100 on prompt and pad).

    Labels are *unshifted* (Hugging Face convention): ``labels[b, t]`` is the token at ``t``.
    """
    lengths = np.fromiter((len(ids) for ids, _ in encoded), dtype=np.int64, count=len(encoded))
    width = int(lengths.max()) if len(encoded) else 0
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = np.full((len(encoded), width), pad_id, dtype=np.int64)
    labels = np.full((len(encoded), width), IGNORE_INDEX, dtype=np.int64)
    for row, (ids, n_prompt) in enumerate(encoded):
        input_ids[row, : len(ids)] = ids
        labels[row, n_prompt : len(ids)] = ids[n_prompt:]
    attention_mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        "labels": torch.from_numpy(labels),
    }


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad token id lists (for generation): ``input_ids`` and ``attention_mask``."""
    width = max((len(s) for s in sequences), default=0)
    input_ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, ids in enumerate(sequences):
        if ids:
            input_ids[row, width - len(ids) :] = ids
            attention_mask[row, width - len(ids) :] = 1
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention_mask),
    }


def length_bucketed_batches(
    lengths: Sequence[int],
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    bucket_batches: int = 50,
) -> list[list[int]]:
    """Batches of indices grouping similar lengths together (less padding); each index once.

    With ``shuffle``: indices are shuffled, split into mega-buckets of ``bucket_batches``
    batches, sorted by length inside each mega-bucket, cut into batches, and the batch order
    is shuffled (all deterministic given ``seed``). Without: indices sorted by length
    (longest first) are cut into consecutive batches (for inference).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    lens = np.asarray(lengths, dtype=np.int64)
    if not shuffle:
        order = np.argsort(-lens, kind="stable")
        return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(lens))
    mega = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(perm), mega):
        chunk = perm[start : start + mega]
        chunk = chunk[np.argsort(-lens[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
