"""Self-consistency of a model's answers (ours; Wang et al., ICLR 2023): how many of ``k``
sampled reasoning paths reach the same final answer as its greedy path.

A teacher's agreement with itself tells its right answers from its wrong ones where its own
confidence does not: on the embedded testbed an SLM's unlabelled public questions inside its
knowledge boundary on which 5 of 5 samples agree with the greedy answer are 94-100 % right,
those with at most 2 of 5 0-29 % (docs/results/zoo-core.md). Filtering self-written paths
on unlabelled questions by majority agreement before training on them is the recipe of
"Large Language Models Can Self-Improve" (Huang et al., 2022); here it decides which paths an
SLM may teach the LLM (``distill.slm_teaches: consistent``).

Sampling runs through the run's generator (:func:`lada.accel.generator`; by default the
project's one decode loop, :func:`lada.eval.generate.sample_paths`: finished rows leave the
batch, each path stops after its answer line) with a seeded random stream of its own, so a
resumed run samples the same paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def agreement_counts(
    model: object,
    tokenizer: object,
    prompts: Sequence[str],
    answers: Sequence[str | None],
    *,
    answer_type: Sequence[str] | str = "number",
    samples: int = 5,
    temperature: float = 0.7,
    max_new_tokens: int = 160,
    batch_size: int = 64,
    seed: int = 0,
) -> np.ndarray:
    """int [len(prompts)]: how many of ``samples`` paths sampled per prompt (the run's
    generator's ``samples``, :func:`lada.accel.generator`) end with the final answer
    ``answers[i]`` (the greedy path's; None never agrees)."""
    from lada.accel import generator
    from lada.data.extract import extract_answer

    n = len(prompts)
    if len(answers) != n:
        raise ValueError(f"{len(answers)} answers for {n} prompts")
    kinds = [answer_type] * n if isinstance(answer_type, str) else list(answer_type)
    counts = np.zeros(n, dtype=np.int64)
    if n == 0 or samples <= 0:
        return counts
    drawn = generator(model, tokenizer).samples(
        prompts,
        samples=samples,
        temperature=temperature,
        seed=seed,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )
    for i, paths in enumerate(drawn):
        if answers[i] is not None:
            counts[i] = sum(extract_answer(p, kinds[i]) == answers[i] for p in paths)
    return counts


__all__ = ["agreement_counts"]
