"""Batched greedy generation of reasoning paths (KV cache, left padding, length-sorted batches).

Prompts are encoded exactly as in training (:func:`lada.train.batching.encode_prompts`) and
left-padded by hand, so the tokenizer's ``padding_side`` is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from lada.data.sample import ANSWER_PREFIX
from lada.train.batching import encode_prompts, left_pad


class AnswerLineStop(StoppingCriteria):
    """Stop a row once its continuation holds an ``Answer: X`` line ended by a newline.

    Works on decoded token pieces, one new token per call, so its cost is a few string
    operations per row and step. (EOS is handled by ``generate`` itself.)
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_width: int, batch: int) -> None:
        self.tokenizer = tokenizer
        self.start = prompt_width
        self.seen = prompt_width
        self.tails = [""] * batch
        self.after = [None] * batch  # text after "Answer:" once seen
        self.pieces: dict[int, str] = {}

    def _piece(self, token_id: int) -> str:
        if token_id not in self.pieces:
            self.pieces[token_id] = self.tokenizer.decode([token_id], skip_special_tokens=True)
        return self.pieces[token_id]

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs
    ) -> torch.BoolTensor:
        new = input_ids[:, self.seen :].tolist()
        self.seen = input_ids.shape[1]
        done = []
        for row, ids in enumerate(new):
            text = "".join(self._piece(t) for t in ids)
            after = self.after[row]
            if after is None:
                tail = self.tails[row] + text
                pos = tail.rfind(ANSWER_PREFIX)
                if pos >= 0:
                    after = self.after[row] = tail[pos + len(ANSWER_PREFIX) :]
                else:
                    self.tails[row] = tail[-len(ANSWER_PREFIX) :]
            else:
                after = self.after[row] = after + text
            done.append(after is not None and "\n" in after.lstrip())
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate_paths(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 160,
    batch_size: int = 64,
    stop_at_answer: bool = True,
) -> list[str]:
    """Greedy continuations of ``prompts`` (in input order), special tokens stripped.

    With ``stop_at_answer`` a row stops after its first complete ``Answer: X`` line (the
    continuation then ends with that line, without the newline).
    """
    if not prompts:
        return []
    encoded = encode_prompts(tokenizer, prompts)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    gen_config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=pad_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    device = next(model.parameters()).device
    out: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = {
                k: v.to(device) for k, v in left_pad([encoded[i] for i in idx], pad_id).items()
            }
            width = batch["input_ids"].shape[1]
            stopping = StoppingCriteriaList()
            if stop_at_answer:
                stopping.append(AnswerLineStop(tokenizer, width, len(idx)))
            generated = model.generate(
                **batch, generation_config=gen_config, stopping_criteria=stopping
            )
            texts = tokenizer.batch_decode(generated[:, width:].tolist(), skip_special_tokens=True)
            for i, text in zip(idx, texts, strict=True):
                out[i] = _cut_after_answer(text) if stop_at_answer else text
    finally:
        model.train(was_training)
    return out


def _cut_after_answer(text: str) -> str:
    """Drop what follows the first complete ``Answer:`` line (the newline and beyond)."""
    pos = text.find(ANSWER_PREFIX)
    if pos < 0:
        return text
    end = text.find("\n", pos)
    while end >= 0 and not text[pos + len(ANSWER_PREFIX) : end].strip():
        end = text.find("\n", end + 1)
    return text if end < 0 else text[:end]
