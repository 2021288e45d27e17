"""Data-allocation strategies on the LaDa filter's hook (spec §7 baselines).

``RunConfig.allocation`` picks, per (SLM k, LLM) pair and direction, which public ids are
transferred in a round:

- ``lada``: the learnability-aware filters (``ServerRole.allocate``; rewards update them);
- ``all``: all of P (also the "without filter" ablation);
- ``random``: ``count`` ids uniformly at random (seeded per round, client and direction);
- ``random_labelled`` (ours): on the SLM side (S) ``count`` ids at random among P's
  *labelled* questions, the only ones the LLM teaches with ``distill.llm_teaches: labelled``;
  on the LLM side as ``random``. A control for LaDa's SLM-side filters, which learn to pick
  questions their teacher can teach: does a filter beat simply not asking where the teacher
  abstains?
- ``random_teachable`` (ours, a control): ``count`` ids at random among the candidates LaDa's
  filters see, on both sides (the same teachability mask, :mod:`lada.federation.teachable`,
  the same budget; :meth:`lada.federation.plugin.LadaPlugin.allocate`): does a filter beat
  random picks among what the teacher will teach? With ``allocation_counts_from`` (a run
  folder) it picks, per learner, direction and round, as many as that run picked
  (:func:`matched_counts`): count-matched to LaDa's filters, which pick at most the budget;
- ``perplexity``: the ``count`` ids whose teacher path has the highest learner perplexity
  PPL(y|x) = exp(mean token NLL of y given x) (perplexity and IFD skip ids whose teacher
  abstained: an empty path, :mod:`lada.train.boundary`);
- ``ifd``: the ``count`` ids with the highest IFD = PPL(y|x) / PPL(y) among those with IFD < 1
  (Cherry-LLM's rule: IFD ≥ 1 means the question does not help), filled if needed with the
  lowest IFD ≥ 1;
- ``min_ce``: FedMKT's per-sample min-CE choice: a sample is transferred teacher → learner
  when the teacher's cross-entropy on the sample's gold target is lower than the learner's
  (higher reward exp(−CE)); at most ``count`` ids, largest CE gap first;
- ``oracle`` (ours, a diagnostic, never a method): :mod:`lada.federation.oracle`.

``count`` (see :func:`allocation_count`): ``allocation_count`` when set, else ``filter.budget``
(the cap LaDa's filter works under), else round(cold_start_fraction · |P|).

Where the learner's losses are computed: the learner scores the teacher's paths, so for the
SLM side (direction S) the server generates the LLM's paths for all of P and each client scores
them with its SLM (protocol task ``score``: ids and paths down, two float arrays up); for the
LLM side (direction L) each client generates its paths for all of P (task ``generate``) and the
server scores them with the LLM. ``min_ce`` scores the public gold targets the same way (no
generation). Paths generated here are reused by the round's distillation step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np

from lada.config.schema import AllocationName
from lada.federation.oracle import oracle_round
from lada.federation.protocol import GenerateIns, PathsRes, ScoreIns, ScoreRes, Task
from lada.federation.server import Allocation
from lada.utils.seeding import derive_seed

STRATEGIES: tuple[str, ...] = get_args(AllocationName)


def allocation_count(
    n_public: int, configured: int | None, budget: int | None, fraction: float
) -> int:
    """Samples per pair, direction and round for the count-based baselines."""
    n = configured if configured is not None else budget
    if n is None:
        n = int(round(fraction * n_public))
    return max(0, min(int(n), n_public)) if n_public else 0


MAX_SELECTIONS_BYTES = 16 * 2**20  # a selections file larger than this is not one of ours


def matched_counts(run_dir: str | Path, rnd: int) -> dict[int, dict[str, int]]:
    """{client k: {direction: picks}} of round ``rnd`` of the run in ``run_dir``, read from its
    ``selections/round_NNN.json`` (``{"k": {"S": [ids], "L": [ids]}}``), for a control
    count-matched to that run. A client or direction the file lacks picked nothing.

    Raises ValueError naming the file (and field) when it is missing, too large, not JSON or
    not of that shape: the run it follows must have finished round ``rnd``."""
    path = Path(run_dir) / "selections" / f"round_{rnd:03d}.json"
    where = f"allocation_counts_from: {path}"
    if not path.is_file():
        raise ValueError(
            f"{where}: no such file (the run it follows must have finished round {rnd})"
        )
    if path.stat().st_size > MAX_SELECTIONS_BYTES:
        raise ValueError(
            f"{where}: larger than {MAX_SELECTIONS_BYTES} bytes; not a selections file"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{where}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object of clients, not {type(data).__name__}")
    out: dict[int, dict[str, int]] = {}
    for k, per in data.items():
        if not (isinstance(k, str) and k.isdigit()):
            raise ValueError(f"{where}: key {k!r}: expected a client index")
        if not isinstance(per, dict):
            raise ValueError(f"{where}: field {k}: expected an object of directions")
        counts = {}
        for d, ids in per.items():
            if d not in ("S", "L") or not isinstance(ids, list):
                raise ValueError(f"{where}: field {k}.{d}: expected S or L with a list of ids")
            counts[d] = len(ids)
        out[int(k)] = counts
    return out


def _top(scores: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` highest scores' indices, sorted; NaN scores are never picked."""
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    order = order[~np.isnan(s[order])]
    return np.sort(order[:count]).astype(np.int64)


def pick_random(n: int, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(count, n), replace=False)).astype(np.int64)


def pick_random_among(candidates: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` indices drawn uniformly without replacement among those where ``candidates``
    (a bool mask) holds; all of them when there are fewer; sorted."""
    pool = np.flatnonzero(np.asarray(candidates, dtype=bool))
    if pool.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(pool[pick_random(pool.size, count, seed)]).astype(np.int64)


def perplexity(nll_cond: np.ndarray) -> np.ndarray:
    """PPL(y|x) = exp(mean token NLL)."""
    return np.exp(np.asarray(nll_cond, dtype=np.float64))


def ifd(nll_cond: np.ndarray, nll_uncond: np.ndarray) -> np.ndarray:
    """IFD = PPL(y|x) / PPL(y) = exp(nll(y|x) − nll(y))."""
    return np.exp(np.asarray(nll_cond, np.float64) - np.asarray(nll_uncond, np.float64))


def pick_perplexity(nll_cond: np.ndarray, count: int) -> np.ndarray:
    return _top(perplexity(nll_cond), count)


def pick_ifd(nll_cond: np.ndarray, nll_uncond: np.ndarray, count: int) -> np.ndarray:
    s = ifd(nll_cond, nll_uncond)
    valid = np.flatnonzero(s < 1.0)
    rest = np.flatnonzero(s >= 1.0)
    order = np.concatenate(
        [valid[np.argsort(-s[valid], kind="stable")], rest[np.argsort(s[rest], kind="stable")]]
    )
    return np.sort(order[:count]).astype(np.int64)


def pick_min_ce(learner_ce: np.ndarray, teacher_ce: np.ndarray, count: int) -> np.ndarray:
    gap = np.asarray(learner_ce, np.float64) - np.asarray(teacher_ce, np.float64)
    eligible = np.flatnonzero(gap > 0)
    order = eligible[np.argsort(-gap[eligible], kind="stable")]
    return np.sort(order[:count]).astype(np.int64)


def score_nll(
    model: Any, tokenizer: Any, prompts: Sequence[str], paths: Sequence[str], max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """(mean token NLL of each path given its prompt, ... given an empty prompt)."""
    from lada.train.logprobs import score_texts

    cond = score_texts(model, tokenizer, prompts, paths, max_length=max_length)["mean_nll"]
    uncond = score_texts(model, tokenizer, [""] * len(paths), paths, max_length=max_length)
    return cond.astype(np.float32), uncond["mean_nll"].astype(np.float32)


@dataclass
class BaselineAllocation:
    alloc: dict[int, Allocation] = field(default_factory=dict)
    llm_paths: dict[str, str] = field(default_factory=dict)  # reusable LLM paths
    slm_paths: dict[int, PathsRes] = field(default_factory=dict)  # reusable SLM paths


def baseline_allocate(
    round_idx: int,
    strategy: str,
    server: Any,
    transport: Any,
    alive: list[int],
    directions: Sequence[str],
    count: int,
    ok: Callable[[Task, dict[int, Any]], dict[int, Any]],
    mask: dict[int, dict[str, np.ndarray]] | None = None,
) -> BaselineAllocation:
    """Every alive pair's picks under a baseline ``strategy`` (not ``lada``); ``mask`` (the
    teachable candidates, :mod:`lada.federation.teachable`) restricts the oracle's picks."""
    if strategy not in STRATEGIES or strategy in ("lada", "random_teachable"):
        raise ValueError(f"unknown baseline allocation {strategy!r}")
    ids = list(server.public_ids)
    n = len(ids)
    out = BaselineAllocation({k: Allocation() for k in alive})
    picks: dict[int, dict[str, np.ndarray]] = {k: {} for k in alive}
    seed = server.settings.seed
    max_len = server.settings.distill.llm_optim.max_length
    prompts = [s.prompt() for s in server.public]
    if strategy == "all":
        picks = {k: {d: np.arange(n) for d in directions} for k in alive}
    elif strategy == "random":
        picks = {
            k: {
                d: pick_random(n, count, derive_seed(seed, "random", round_idx, k, d) % 2**32)
                for d in directions
            }
            for k in alive
        }
    elif strategy == "random_labelled":
        labelled = np.flatnonzero([bool(s.answer) for s in server.public])
        for k in alive:
            for d in directions:
                rs = derive_seed(seed, "random", round_idx, k, d) % 2**32
                if d == "S":
                    picks[k][d] = np.sort(labelled[pick_random(len(labelled), count, rs)])
                else:
                    picks[k][d] = pick_random(n, count, rs)
    elif strategy == "oracle":  # ours, a diagnostic upper bound (lada.federation.oracle)
        o = oracle_round(round_idx, server, transport, alive, directions, count, ok, mask)
        picks, out.llm_paths, out.slm_paths = o
    elif strategy in ("perplexity", "ifd"):
        if "S" in directions:
            out.llm_paths = server.generate(round_idx, ids)
            teacher = [out.llm_paths[i] for i in ids]
            scored: dict[int, ScoreRes] = ok(
                Task.SCORE,
                transport.broadcast(
                    round_idx, Task.SCORE, {k: ScoreIns(round_idx, ids, teacher) for k in alive}
                ),
            )
            for k, r in scored.items():
                cond, uncond = _taught(r.nll_cond, teacher), _taught(r.nll_uncond, teacher)
                picks[k]["S"] = _pick_scored(strategy, cond, uncond, count)
        if "L" in directions:
            gen: dict[int, PathsRes] = ok(
                Task.GENERATE,
                transport.broadcast(
                    round_idx, Task.GENERATE, {k: GenerateIns(round_idx, ids) for k in alive}
                ),
            )
            out.slm_paths = gen
            for k, r in gen.items():
                cond, uncond = score_nll(server.model, server.tokenizer, prompts, r.paths, max_len)
                cond, uncond = _taught(cond, r.paths), _taught(uncond, r.paths)
                picks[k]["L"] = _pick_scored(strategy, cond, uncond, count)
    else:  # min_ce: both sides' CE on P's gold targets
        gold = [s.target() for s in server.public]
        llm_ce, _ = score_nll(server.model, server.tokenizer, prompts, gold, max_len)
        # an unlabelled public question has no gold target: NaN keeps it out of both picks
        llm_ce[np.array([not s.answer for s in server.public], dtype=bool)] = np.nan
        scored = ok(
            Task.SCORE,
            transport.broadcast(
                round_idx, Task.SCORE, {k: ScoreIns(round_idx, ids, gold) for k in alive}
            ),
        )
        for k, r in scored.items():
            if "S" in directions:
                picks[k]["S"] = pick_min_ce(r.nll_cond, llm_ce, count)
            if "L" in directions:
                picks[k]["L"] = pick_min_ce(llm_ce, r.nll_cond, count)
    for k in alive:
        if set(picks[k]) != set(directions):
            out.alloc.pop(k, None)  # the client failed a scoring task
            continue
        for d in directions:
            out.alloc[k].ids[d] = [ids[i] for i in picks[k][d]]
            out.alloc[k].mode[d] = strategy
    return out


def _taught(scores: np.ndarray, paths: Sequence[str]) -> np.ndarray:
    """``scores`` with NaN where the teacher abstained (an empty path, lada.train.boundary):
    perplexity and IFD then never pick a sample that nobody would learn."""
    out = np.array(scores, dtype=np.float64, copy=True)
    out[np.array([not p for p in paths], dtype=bool)] = np.nan
    return out


def _pick_scored(strategy: str, cond: np.ndarray, uncond: np.ndarray, count: int) -> np.ndarray:
    if strategy == "perplexity":
        return pick_perplexity(cond, count)
    return pick_ifd(cond, uncond, count)
