"""The learner's distillation step (lada.train.distill): verification against P's labels."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from lada.config.schema import DistillConfig
from lada.data.sample import Sample
from lada.models import build_model, build_tokenizer
from lada.train.distill import learn_from_paths, verified_mask
from lada.train.loop import OptimConfig


def _sample(i: int, answer: str) -> Sample:
    return Sample(
        id=f"p{i}",
        domain="market",
        question=f"Ava buys {i} fig. How many coins?",
        answer=answer,
        answer_type="number",
        steps=(f"fig {i}*2={2 * i}",),
    )


SAMPLES = [_sample(i, str(2 * i)) for i in range(1, 9)]
WRONG = [f"fig {i}*2={2 * i + 1}\nAnswer: {2 * i + 1}" for i in range(1, 9)]
RIGHT = [s.target() for s in SAMPLES]
OWN = [f"fig {i}*3={3 * i}\nAnswer: {3 * i}" for i in range(1, 9)]


@pytest.fixture(scope="module")
def tok():
    corpus = [s.prompt() + t for s, t in zip(SAMPLES * 2, RIGHT + WRONG, strict=True)] + OWN
    return build_tokenizer(corpus * 3, vocab_size=200)


def test_verified_mask_compares_final_answers_and_trusts_unlabelled() -> None:
    unlabelled = _sample(9, "")
    got = verified_mask([SAMPLES[0], SAMPLES[1], unlabelled], [RIGHT[0], WRONG[1], "Answer: 5"])
    assert got.tolist() == [True, False, True]


def _learn(tok, paths: list[str], unverified: str, preference: str = "role"):
    model = build_model("slm-xs", tok, seed=0)
    cfg = DistillConfig(unverified=unverified, preference=preference)  # type: ignore[arg-type]
    optim = OptimConfig(lr=3e-3, batch_size=4, epochs=3, warmup_steps=0, weight_decay=0.0)
    return learn_from_paths(model, tok, SAMPLES, paths, OWN, cfg, optim)


def test_skip_learns_nothing_from_wrong_teacher_paths(tok) -> None:
    kept = _learn(tok, WRONG, "keep")
    skipped = _learn(tok, WRONG, "skip")
    assert kept.num_pairs == len(SAMPLES) and skipped.num_pairs == 0
    drop_kept = float(np.mean(kept.loss_before - kept.loss_after))
    drop_skipped = float(np.mean(skipped.loss_before - skipped.loss_after))
    assert drop_kept > 0.2
    assert abs(drop_skipped) < 1e-6  # no gradient at all, no weight decay


def test_skip_keeps_verified_paths_and_correctness_pairs(tok) -> None:
    mixed = RIGHT[:4] + WRONG[4:]
    out = _learn(tok, mixed, "skip", preference="correctness")
    assert out.num_pairs == 4  # the four wrong-teacher samples: neither path is right
    keep = _learn(tok, mixed, "keep", preference="correctness")
    assert keep.num_pairs == 8
    drop, drop_keep = out.loss_before - out.loss_after, keep.loss_before - keep.loss_after
    assert drop[:4].mean() > 0.2  # the verified paths are learned
    # the wrong paths are only learned through what they share with the right ones
    assert drop[4:].mean() < drop_keep[4:].mean() - 0.2


def test_skip_drops_pairs_whose_rejected_path_is_also_right(tok) -> None:
    own_right = [f"{i}*2={2 * i}\nAnswer: {2 * i}" for i in range(1, 9)]
    model = build_model("slm-xs", tok, seed=0)
    optim = OptimConfig(lr=1e-3, batch_size=4, epochs=1, warmup_steps=0)
    for mode, pairs in (("keep", len(SAMPLES)), ("skip", 0)):
        cfg = DistillConfig(unverified=mode)  # type: ignore[arg-type]
        out = learn_from_paths(model, tok, SAMPLES, RIGHT, own_right, cfg, optim)
        assert out.num_pairs == pairs, mode
