"""``allocation: oracle`` (ours): a diagnostic upper bound for allocation, never a method.

It picks by what no filter can see: whether each candidate's teacher path is *right* and the
learner's own answer is *wrong*, judged against the true answer, which the oracle reads from the
synthetic world even where P carries no label (a question naming a client's private entities).
Its picks show how much room allocation has at all, and LaDa's and the controls' picks are
compared with it (selection precision, :func:`selection_precision`).

Definition, for learner ℓ taught by teacher τ (direction S: SLM k learns from the LLM; L: the
LLM learns from SLM k), over the candidates of P the mask allows (the teachable ones; all of P
when no mask is given):

* ``teacher_ok[i]``: τ's path for i reaches the true answer (an empty path, where τ abstains,
  does not);
* ``learner_ok[i]``: ℓ's own greedy path for i reaches it (the SLM's own path is the one it
  would teach: empty where it abstains, which counts as not knowing);
* the learner's measured capacity ``cap_ℓ(s)``: its accuracy on P's s-step questions, from the
  same own paths (:func:`capacity_profile`);
* the score (:func:`oracle_scores`)

      score_i = 2·[teacher_ok ∧ ¬learner_ok] + 1·[teacher_ok ∧ learner_ok] + cap_ℓ(steps_i)

  so a right path on something the learner gets wrong comes first, the closest to what the
  learner can already do (highest cap at its number of steps) first among those; then right
  paths it already gets right; a wrong path last. Ties are broken by a seeded random order.
* the picks (:func:`pick_oracle`): the ``count`` highest scores among the allowed candidates,
  the same budget as every allocation.

Cost: the LLM's greedy paths on all of P and every SLM's paths on all of P (task ``generate``),
once per round; both are reused as the round's teacher paths, so the path exchange costs
nothing more. The truth of an unlabelled question needs the synthetic world
(``ServerSettings.world``); without it (file data) such a question's truth is unknown and
neither side counts as right on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lada.data.sample import LETTERS, Sample
from lada.federation.protocol import GenerateIns, PathsRes, Task
from lada.utils.seeding import derive_seed, seed_everything

__all__ = [
    "capacity_profile",
    "correct_flags",
    "oracle_round",
    "oracle_scores",
    "pick_oracle",
    "selection_precision",
    "true_answers",
]

# per learner (client k) and direction: which of P's candidates may be picked (None: all)
Mask = dict[int, dict[str, np.ndarray]] | None


def true_answers(public: Sequence[Sample], world_cfg: Any = None) -> list[str | None]:
    """Each public sample's true answer: its label, else (an unlabelled synthetic question) the
    world's total Σ count·rate of the entities it names (for ``mc``, the letter of that total
    among its choices); None where neither is known."""
    world = None
    if world_cfg is not None:
        from lada.data.synthetic import make_world

        world = make_world(world_cfg)
    out: list[str | None] = []
    for s in public:
        if s.answer:
            out.append(s.answer)
            continue
        ents, counts = s.meta.get("entities"), s.meta.get("counts")
        if world is None or not ents or counts is None:
            out.append(None)
            continue
        total = sum(int(c) * world.rate(str(e)) for e, c in zip(ents, counts, strict=True))
        if s.answer_type == "mc":
            choices = list(s.choices or ())
            out.append(LETTERS[choices.index(str(total))] if str(total) in choices else None)
        else:
            out.append(str(total))
    return out


def correct_flags(
    paths: Sequence[str], public: Sequence[Sample], truths: Sequence[str | None]
) -> np.ndarray:
    """Whether each path's answer is the true one (False for an empty path or an unknown truth)."""
    from lada.data.extract import extract_answer, is_correct

    return np.array(
        [
            bool(p)
            and t is not None
            and is_correct(extract_answer(p, s.answer_type), t, s.answer_type)
            for p, s, t in zip(paths, public, truths, strict=True)
        ],
        dtype=bool,
    )


def capacity_profile(learner_ok: np.ndarray, steps: np.ndarray) -> dict[int, float]:
    """The learner's accuracy per number of steps: {s: mean(learner_ok[steps == s])}."""
    ok, st = np.asarray(learner_ok, dtype=bool), np.asarray(steps, dtype=np.int64)
    return {int(s): float(ok[st == s].mean()) for s in np.unique(st)}


def oracle_scores(teacher_ok: np.ndarray, learner_ok: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """score_i = 2·[τ right ∧ ℓ wrong] + [τ right ∧ ℓ right] + cap_ℓ(steps_i) (module doc)."""
    t, lr = np.asarray(teacher_ok, dtype=bool), np.asarray(learner_ok, dtype=bool)
    st = np.asarray(steps, dtype=np.int64)
    if not (t.shape == lr.shape == st.shape):
        raise ValueError(f"oracle_scores: shapes differ {t.shape}, {lr.shape}, {st.shape}")
    cap = capacity_profile(lr, st)
    tier = 2.0 * (t & ~lr) + 1.0 * (t & lr)
    return tier + np.array([cap[int(s)] for s in st], dtype=np.float64)


def pick_oracle(
    teacher_ok: np.ndarray,
    learner_ok: np.ndarray,
    steps: np.ndarray,
    count: int,
    seed: int,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """The ``count`` highest :func:`oracle_scores` among the candidates ``mask`` allows (all
    when None), ties in a random order drawn from ``seed``; sorted indices into P."""
    scores = oracle_scores(teacher_ok, learner_ok, steps)
    allowed = np.ones(scores.size, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if allowed.shape != scores.shape:
        raise ValueError(f"oracle mask has shape {allowed.shape}, P has {scores.size} samples")
    tie = np.random.default_rng(seed).permutation(scores.size)
    cand = np.flatnonzero(allowed)
    order = cand[np.lexsort((tie[cand], -scores[cand]))]
    return np.sort(order[: max(0, int(count))]).astype(np.int64)


def selection_precision(picks: Sequence[str], oracle: Sequence[str]) -> float:
    """|picks ∩ oracle picks| / |picks| (NaN when nothing was picked)."""
    if not picks:
        return float("nan")
    return len(set(picks) & set(oracle)) / len(set(picks))


def llm_own_paths(server: Any, round_idx: int, ids: Sequence[str]) -> list[str]:
    """The LLM's greedy paths for every public id, whether it would teach it or not."""
    from lada.accel import generator

    seed_everything(derive_seed(server.settings.seed, "server", round_idx, "generate"))
    d = server.settings.distill
    return generator(server.model, server.tokenizer).paths(
        [server.by_id[i].prompt() for i in ids],
        max_new_tokens=d.max_new_tokens,
        batch_size=d.gen_batch_size,
        desc="paths LLM (oracle)",
    )


def oracle_round(
    round_idx: int,
    server: Any,
    transport: Any,
    alive: list[int],
    directions: Sequence[str],
    count: int,
    ok: Callable[[Task, dict[int, Any]], dict[int, Any]],
    mask: Mask = None,
) -> tuple[dict[int, dict[str, np.ndarray]], dict[str, str], dict[int, PathsRes]]:
    """(picks {k: {direction: indices into P}}, the LLM's teacher paths, the SLMs' paths) for
    every alive pair; the paths are the ones the round then teaches (``server.teaches``
    decides where the LLM writes one). A client whose paths did not arrive gets no picks."""
    ids = list(server.public_ids)
    public = list(server.public)
    truths = true_answers(public, getattr(server.settings, "world", None))
    steps = np.array([s.num_steps for s in public], dtype=np.int64)
    own = llm_own_paths(server, round_idx, ids)
    llm_paths = {i: (p if server.teaches(i) else "") for i, p in zip(ids, own, strict=True)}
    llm_teacher_ok = correct_flags([llm_paths[i] for i in ids], public, truths)
    llm_learner_ok = correct_flags(own, public, truths)
    gen: dict[int, PathsRes] = ok(
        Task.GENERATE,
        transport.broadcast(
            round_idx, Task.GENERATE, {k: GenerateIns(round_idx, ids) for k in alive}
        ),
    )
    picks: dict[int, dict[str, np.ndarray]] = {k: {} for k in alive}
    for k, r in gen.items():
        slm_ok = correct_flags(r.paths, public, truths)
        per: dict[str, np.ndarray] = {}
        for d in directions:
            teacher, learner = (llm_teacher_ok, slm_ok) if d == "S" else (slm_ok, llm_learner_ok)
            m = None if mask is None else mask.get(k, {}).get(d)
            seed = derive_seed(server.settings.seed, "oracle", round_idx, k, d) % 2**32
            per[d] = pick_oracle(teacher, learner, steps, count, seed, m)
        picks[k] = per
    return picks, llm_paths, gen
