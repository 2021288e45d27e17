"""Batching, log-probabilities, the training loop and SFT."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math
import random

import numpy as np
import pytest
import torch

from lada.models import build_model, build_tokenizer
from lada.train.batching import (
    IGNORE_INDEX,
    collate,
    encode_pairs,
    encode_prompts,
    length_bucketed_batches,
)
from lada.train.logprobs import (
    logprobs_from_logits,
    score_texts,
    sequence_logprobs,
    supervised_logits,
    target_logits,
    target_token_logprobs,
    token_nll_per_sample,
)
from lada.train.loop import OptimConfig, lr_lambda, train
from lada.train.sft import sft

PROMPTS = [
    "Max has 3 cards. He buys 4 more. How many now?\n",
    "Copy 7\n",
    "Ann has 12 pens and gives away 5. Then she buys 9 more. How many pens does she have?\n",
    "Q 1\n(A) 2 (B) 3\n",
]
TARGETS = [
    "Step: 3+4=7\nAnswer: 7",
    "Answer: 7",
    "Step: 12-5=7\nStep: 7+9=16\nAnswer: 16",
    "Answer: B",
]


@pytest.fixture(scope="module")
def tok():
    corpus = [p + t for p, t in zip(PROMPTS, TARGETS, strict=True)] * 5
    corpus += [f"Copy {d}\nAnswer: {d}" for d in range(10)]
    return build_tokenizer(corpus, vocab_size=300)


@pytest.fixture(scope="module")
def model(tok):
    return build_model("slm-xs", tok, seed=0)


def _manual_logprob(model, tok, prompt: str, target: str) -> float:
    """Unbatched reference: full logits, log_softmax, sum over target tokens + eos."""
    p = encode_prompts(tok, [prompt])[0]
    t = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p + t])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    return sum(float(logp[len(p) + j - 1, tok_id]) for j, tok_id in enumerate(t))


# ---- batching -----------------------------------------------------------------------------


def test_encode_pairs_layout(tok):
    enc = encode_pairs(tok, PROMPTS, TARGETS, max_length=512)
    for (ids, n_prompt), p, t in zip(enc, PROMPTS, TARGETS, strict=True):
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert tok.decode(ids[1:n_prompt]) == p
        assert tok.decode(ids[n_prompt:-1]) == t


def test_encode_pairs_truncation_keeps_target_end(tok):
    full = encode_pairs(tok, PROMPTS[2:3], TARGETS[2:3], max_length=512)[0][0]
    n_target = len(tok(TARGETS[2], add_special_tokens=False)["input_ids"]) + 1
    ids, n_prompt = encode_pairs(tok, PROMPTS[2:3], TARGETS[2:3], max_length=n_target + 3)[0]
    assert len(ids) == n_target + 3 and n_prompt == 3
    assert ids == full[-len(ids) :]  # the prompt lost tokens from its left
    ids, n_prompt = encode_pairs(tok, PROMPTS[2:3], TARGETS[2:3], max_length=8)[0]
    assert len(ids) == 8 and n_prompt == 1 and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[1:-1]).endswith("Answer: 16")


def test_collate_masks_prompt_and_padding(tok):
    enc = encode_pairs(tok, PROMPTS, TARGETS, max_length=512)
    batch = collate(enc, tok.pad_token_id)
    width = max(len(ids) for ids, _ in enc)
    assert batch["input_ids"].shape == (len(enc), width)
    for row, (ids, n_prompt) in enumerate(enc):
        assert batch["input_ids"][row, : len(ids)].tolist() == ids
        assert (batch["input_ids"][row, len(ids) :] == tok.pad_token_id).all()
        assert batch["attention_mask"][row].tolist() == [1] * len(ids) + [0] * (width - len(ids))
        labels = batch["labels"][row]
        assert (labels[:n_prompt] == IGNORE_INDEX).all()
        assert labels[n_prompt : len(ids)].tolist() == ids[n_prompt:]
        assert (labels[len(ids) :] == IGNORE_INDEX).all()


def test_length_bucketed_batches_cover_each_index_once():
    rng = random.Random(0)
    lengths = [rng.randint(5, 200) for _ in range(1003)]
    batches = length_bucketed_batches(lengths, batch_size=32, seed=1, bucket_batches=4)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(len(b) <= 32 for b in batches)
    assert batches == length_bucketed_batches(lengths, batch_size=32, seed=1, bucket_batches=4)
    assert batches != length_bucketed_batches(lengths, batch_size=32, seed=2, bucket_batches=4)
    # bucketing reduces padding compared with random batches
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    perm = np.random.default_rng(0).permutation(len(lengths))
    random_padded = sum(
        len(perm[i : i + 32]) * max(lengths[j] for j in perm[i : i + 32])
        for i in range(0, len(perm), 32)
    )
    assert padded < 0.8 * random_padded
    ordered = length_bucketed_batches(lengths, batch_size=32, shuffle=False)
    assert sorted(i for b in ordered for i in b) == list(range(len(lengths)))
    assert [lengths[i] for b in ordered for i in b] == sorted(lengths, reverse=True)


# ---- log-probabilities -----------------------------------------------------------------------


def test_sequence_logprobs_match_manual_sum(model, tok):
    batch = collate(encode_pairs(tok, PROMPTS, TARGETS, max_length=512), tok.pad_token_id)
    with torch.no_grad():
        got = sequence_logprobs(model, batch)
    expected = [_manual_logprob(model, tok, p, t) for p, t in zip(PROMPTS, TARGETS, strict=True)]
    assert got.shape == (len(PROMPTS),)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-4)
    n_tokens = (batch["labels"] != IGNORE_INDEX).sum(1)
    with torch.no_grad():
        nll = token_nll_per_sample(model, batch)
    np.testing.assert_allclose(nll.numpy(), (-got / n_tokens).numpy(), rtol=1e-6)


def test_sequence_logprobs_invariant_to_padding_and_batch(model, tok):
    enc = encode_pairs(tok, PROMPTS, TARGETS, max_length=512)
    with torch.no_grad():
        together = sequence_logprobs(model, collate(enc, tok.pad_token_id))
        alone = torch.cat([sequence_logprobs(model, collate([e], tok.pad_token_id)) for e in enc])
        padded = sequence_logprobs(
            model, collate(enc[1:2], tok.pad_token_id, pad_to_multiple_of=64)
        )
        masked = dict(collate(enc, tok.pad_token_id))
        masked["attention_mask"] = masked["attention_mask"].clone()
        masked["attention_mask"][:, 0] = 1  # not right-padded form: goes through the masked path
        explicit = sequence_logprobs(model, masked)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(padded, alone[1:2], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(explicit, together, rtol=1e-5, atol=1e-4)


def test_sequence_logprobs_is_differentiable(model, tok):
    batch = collate(encode_pairs(tok, PROMPTS, TARGETS, max_length=512), tok.pad_token_id)
    model.zero_grad()
    sequence_logprobs(model, batch).sum().backward()
    grad = model.get_input_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_supervised_rows_equal_the_full_window_in_value_and_gradient(model, tok):
    batch = collate(encode_pairs(tok, PROMPTS, TARGETS, max_length=512), tok.pad_token_id)
    logits, targets, mask = supervised_logits(model, batch)
    assert logits.shape == (int(mask.sum()), model.config.vocab_size) and targets.shape[0] == len(
        logits
    )
    model.zero_grad()
    full = logprobs_from_logits(*target_logits(model, batch))
    full.sum().backward()
    expected = model.get_input_embeddings().weight.grad.clone()
    model.zero_grad()
    cut, cut_mask = target_token_logprobs(model, batch)  # the supervised-rows path
    cut.sum().backward()
    torch.testing.assert_close(cut_mask, mask)
    torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-5)
    assert bool((cut[~mask] == 0).all())
    torch.testing.assert_close(
        model.get_input_embeddings().weight.grad, expected, rtol=1e-4, atol=1e-6
    )
    model.zero_grad(set_to_none=True)


def test_target_token_logprobs_without_an_output_head_uses_the_full_window(model, tok):
    batch = collate(encode_pairs(tok, PROMPTS, TARGETS, max_length=512), tok.pad_token_id)

    class NoHead(torch.nn.Module):  # a model that does not expose its output embeddings
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kwargs):
            return self.inner(**kwargs)

    wrapped = NoHead(model)
    assert supervised_logits(wrapped, batch) is None
    with torch.no_grad():
        got, _ = target_token_logprobs(wrapped, batch)
        want, _ = target_token_logprobs(model, batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_score_texts_aligned_and_restores_mode(model, tok):
    model.train()
    scores = score_texts(model, tok, PROMPTS, TARGETS, batch_size=3)
    assert model.training
    model.eval()
    expected = [_manual_logprob(model, tok, p, t) for p, t in zip(PROMPTS, TARGETS, strict=True)]
    np.testing.assert_allclose(scores["logprob_sum"], expected, rtol=1e-5, atol=1e-4)
    counts = [len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in TARGETS]
    assert scores["num_tokens"].tolist() == counts
    np.testing.assert_allclose(scores["mean_nll"], -np.array(expected) / counts, rtol=1e-5)


# ---- loop ---------------------------------------------------------------------------------------


def test_lr_schedule_warmup_then_cosine_to_min():
    cfg = OptimConfig(warmup_steps=10, min_lr_ratio=0.1)
    f = lr_lambda(cfg, total_steps=110)
    assert f(0) < f(5) < f(9) < f(10) == pytest.approx(1.0)
    assert f(109) == pytest.approx(0.1)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 50 / 99)))
    ratio = lr_lambda(OptimConfig(warmup_ratio=0.5, schedule="constant"), total_steps=20)
    assert ratio(8) < 1.0 and ratio(10) == ratio(19) == 1.0


def test_train_loop_records_last_per_sample_losses_and_restores_mode():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    x, y = torch.randn(10, 3), torch.randn(10)
    calls = []

    def loss_fn(m, idx):
        calls.append(list(idx))
        per = (m(x[idx]).squeeze(-1) - y[idx]) ** 2
        return per.mean(), per

    net.eval()
    cfg = OptimConfig(lr=0.05, warmup_steps=0, epochs=3)
    stats = train(
        net, lambda e: [[e % 10, 1], [2, 3, 4]], loss_fn, cfg, item_tokens=[1] * 10, num_items=10
    )
    assert not net.training
    assert stats.steps == 6 and len(stats.step_losses) == 6 and len(stats.learning_rates) == 6
    assert stats.tokens == 15 and stats.tokens_per_s > 0
    assert calls[-2] == [2, 1]
    assert np.isnan(stats.per_sample_loss[5]) and not np.isnan(stats.per_sample_loss[2])
    with torch.no_grad():
        last = float((net(x[[2]]).squeeze(-1) - y[[2]]) ** 2)
    assert stats.sample_losses[2] != pytest.approx(last)  # recorded before the last update
    stats2 = train(net, [[0, 1]], lambda m, idx: m(x[idx]).pow(2).mean(), OptimConfig(max_steps=4))
    assert stats2.steps == 4 and stats2.sample_losses == {}
    capped = OptimConfig(epochs=3, steps_cap=4)  # at most 4 of the 3 x 2 steps
    assert train(net, [[0, 1], [2, 3]], lambda m, idx: m(x[idx]).pow(2).mean(), capped).steps == 4
    roomy = OptimConfig(epochs=3, steps_cap=100)  # a cap above the epochs' steps changes nothing
    assert train(net, [[0, 1], [2, 3]], lambda m, idx: m(x[idx]).pow(2).mean(), roomy).steps == 6


def test_train_loop_is_seeded(tok):
    def run() -> list[float]:
        m = build_model("slm-xs", tok, seed=0)
        m.config.attention_dropout = 0.0
        enc = encode_pairs(tok, PROMPTS, TARGETS, max_length=64)
        cfg = OptimConfig(max_steps=3, batch_size=2)
        return train(
            m,
            lambda e: length_bucketed_batches([len(i) for i, _ in enc], 2, seed=e),
            lambda mm, idx: token_nll_per_sample(mm, collate([enc[i] for i in idx], 0)).mean(),
            cfg,
        ).step_losses

    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = run()
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left untouched
    assert run() == first


# ---- sft ----------------------------------------------------------------------------------------


def test_sft_learns_a_trivial_task(tok):
    from lada.data.extract import extract_answer
    from lada.eval.generate import generate_paths

    rng = random.Random(0)
    digits = [rng.randint(0, 9) for _ in range(1200)]
    prompts = [f"Copy {d}\n" for d in digits]
    targets = [f"Answer: {d}" for d in digits]
    model = build_model("slm-m", tok, seed=0)
    cfg = OptimConfig(lr=3e-3, batch_size=32, epochs=2, warmup_steps=5)
    stats = sft(model, tok, prompts, targets, cfg)
    assert stats.steps == 2 * math.ceil(1200 / 32)
    assert stats.per_sample_loss.shape == (1200,) and not np.isnan(stats.per_sample_loss).any()
    assert stats.final_loss < 0.5 * stats.step_losses[0]
    assert not model.training
    texts = generate_paths(model, tok, [f"Copy {d}\n" for d in range(10)], max_new_tokens=8)
    correct = sum(extract_answer(t, "number") == str(d) for d, t in enumerate(texts))
    assert correct >= 7, texts
