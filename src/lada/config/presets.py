"""Named override sets. ``TINY``: seconds-long runs on tiny data, for tests and smoke runs."""

from __future__ import annotations

TINY: list[str] = [
    "rounds=2",
    "threads=1",
    "data.split.train_per_client=24",
    "data.split.test_per_client=8",
    "data.split.public_size=30",
    "prepare.llm_steps=5",
    "prepare.slm_steps=5",
    "prepare.llm_corpus=64",
    "prepare.slm_corpus=32",
    "prepare.tokenizer_corpus=400",
    "eval.limit=8",
    "filter.budget=6",
    "filter.epochs=2",
    "filter.hidden=32",
    "distill.max_new_tokens=48",
    "eval.max_new_tokens=48",
    "distill.slm_optim.epochs=1",
    "distill.llm_optim.epochs=1",
    # tiny models rarely reach P's gold answer: with unverified=skip no pick would be trained,
    # hence none rewarded, and round 2 would be a cold start again
    "distill.unverified=keep",
]
