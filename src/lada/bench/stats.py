"""Paired confidence intervals, verdicts and filter lift for the bench (ours).

Every comparison is a difference of two methods run with the same seeds (same data, same
models, same test questions), read back from each run's ``questions/`` and ``learning/``
(:mod:`lada.runner.details`).

Accuracy Δ (method A − method B, e.g. LaDa − host alone) on the last round:

    d_{s,k,q} = correct_A(s, k, q) − correct_B(s, k, q)     seed s, client k, question q
    Δ         = mean_s mean_k mean_q d_{s,k,q}

(the mean over clients of each client's accuracy difference, as the tables' "SLM" and "LLM"
columns). Its 95 % interval is a two-level percentile bootstrap (:func:`seed_question_bootstrap`):
draw the seeds with replacement, then, within every drawn seed and client, the questions with
replacement; the seed level carries the seed-to-seed spread (training noise, data draw), the
question level the finite test sets. Verdict (:func:`verdict`): "win" when the interval lies
above 0, "loss" when below, "tie" when it holds 0.

Filter lift of learner (k, direction) in round t: the mean realised reward of LaDa's picks minus
that of random allocation's picks, same seed. The realised reward of a pick is spec §3's
r_i = α·σ(r_batch) + (1 − α)·σ(g_i) (lada.filter.rewards; α and the sample signal from the run's
config), computed here from the learner's saved losses for both methods alike: the B chain of
r_batch runs over that method's own picks of this learner, round after round
(:func:`realised_rewards`). Its interval draws seeds, then each method's picks within a seed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

Verdict = Literal["win", "tie", "loss"]
N_BOOT = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile interval, over ``n_seeds`` seeds."""

    mean: float
    lo: float
    hi: float
    n_seeds: int
    rounds: tuple[int, ...] = ()  # the round each seed was compared at (paired Δ)

    @property
    def verdict(self) -> Verdict:
        return verdict(self.lo, self.hi)

    def fmt(self, scale: float = 100.0, digits: int = 1) -> str:
        """ "+1.2 [−0.3, +2.6]" (scaled, e.g. to points)."""
        m, lo, hi = (scale * x for x in (self.mean, self.lo, self.hi))
        return f"{m:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def verdict(lo: float, hi: float) -> Verdict:
    """ "win" if the interval lies above 0, "loss" if below, else "tie"."""
    if lo > 0:
        return "win"
    if hi < 0:
        return "loss"
    return "tie"


# a seed's statistic: sum_g weight_g * mean(values_g) over its groups g
SeedGroups = Sequence[tuple[float, np.ndarray]]


def _seed_stat(groups: SeedGroups) -> float:
    return float(sum(w * np.mean(x) for w, x in groups))


def seed_question_bootstrap(
    per_seed: Sequence[SeedGroups],
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    rng_seed: int = 0,
) -> Estimate:
    """Two-level percentile bootstrap of mean_s sum_g w_g·mean(x_{s,g}).

    ``per_seed[s]`` lists seed s's groups as (weight, values): the clients of a paired accuracy
    difference (weight 1/K, values the per-question differences), or the two methods of a
    filter lift (+1: LaDa's picks' rewards, −1: random's). Each replicate draws S seeds with
    replacement and, for every drawn slot, resamples every group's values with replacement
    (independently per slot, so a seed drawn twice gets two question resamples). A group with no
    values is an error: it has no mean.
    """
    if not per_seed:
        raise ValueError("seed_question_bootstrap needs at least one seed")
    for s, groups in enumerate(per_seed):
        if not groups or any(len(x) == 0 for _, x in groups):
            raise ValueError(f"seed #{s}: every group needs at least one value")
    rng = np.random.default_rng(rng_seed)
    n_seeds = len(per_seed)
    # boot[j, s, b]: seed s's statistic on its b-th resample for slot j
    boot = np.zeros((n_seeds, n_seeds, n_boot))
    for j in range(n_seeds):
        for s, groups in enumerate(per_seed):
            for w, x in groups:
                x = np.asarray(x, dtype=np.float64)
                idx = rng.integers(0, x.size, size=(n_boot, x.size))
                boot[j, s] += w * x[idx].mean(axis=1)
    slots = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # which seed fills slot j
    reps = boot[np.arange(n_seeds)[None, :], slots, np.arange(n_boot)[:, None]].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [tail, 1.0 - tail])
    point = float(np.mean([_seed_stat(g) for g in per_seed]))
    return Estimate(point, float(lo), float(hi), n_seeds)


# ---- reading runs ---------------------------------------------------------------------------


def last_round(run_dir: Path) -> int | None:
    """The last complete round of a run (state.json), None if none."""
    p = run_dir / "state.json"
    if not p.exists():
        return None
    return int(json.loads(p.read_text())["last_complete_round"])


def question_bits(run_dir: Path, round_idx: int) -> dict[str, dict[str, np.ndarray | str]]:
    """questions/round_NNN.json as {"slm"|"llm": {k: 0/1 array}, "ids_sha1": {k: sha1}}."""
    p = run_dir / "questions" / f"round_{round_idx:03d}.json"
    if not p.exists():
        raise FileNotFoundError(
            f"{p}: no per-question results (a run made before they were saved; re-run it)"
        )
    raw = json.loads(p.read_text())
    out: dict[str, dict] = {"ids_sha1": dict(raw.get("ids_sha1", {}))}
    for side in ("slm", "llm"):
        out[side] = {
            k: np.frombuffer(bits.encode(), dtype=np.uint8) - ord("0")
            for k, bits in raw[side].items()
        }
    return out


def question_kinds(run_dir: Path, k: str, ids_sha1: str) -> np.ndarray:
    """The kind ("private" | "general"; "" when unlabelled) of each of client k's test
    questions, in evaluation order, from the run's data (data/clients/client_K/test.jsonl);
    checked against the evaluation's id fingerprint."""
    from lada.eval.accuracy import ids_fingerprint

    p = run_dir / "data" / "clients" / f"client_{k}" / "test.jsonl"
    if not p.exists():
        raise FileNotFoundError(f"{p}: no test data in the run directory (file data?)")
    recs = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
    if ids_fingerprint(r["id"] for r in recs) != ids_sha1:
        raise ValueError(f"{p}: not the questions this run evaluated (id fingerprint differs)")
    return np.array([str((r.get("meta") or {}).get("kind") or "") for r in recs])


def paired_delta(
    runs_a: Sequence[Path],
    runs_b: Sequence[Path],
    side: Literal["slm", "llm"],
    kind: str | None = None,
) -> Estimate | None:
    """Δ accuracy (A − B) with its CI; ``runs_a[i]`` and ``runs_b[i]`` are the same seed's
    runs, compared at the last round both have completed (the last round of the plan for
    finished runs; ``Estimate.rounds`` says which, so a partial comparison is visible). Seeds
    without a completed trained round in both are left out; None when no seed is left. Raises
    when a pair was evaluated on different questions. ``kind``: only the test questions of
    that kind (the synthetic testbed's "private" / "general"; :func:`question_kinds`)."""
    per_seed = []
    rounds = []
    for a, b in zip(runs_a, runs_b, strict=True):
        ta, tb = last_round(a), last_round(b)
        if ta is None or tb is None or min(ta, tb) < 1:
            continue
        t = min(ta, tb)
        qa, qb = question_bits(a, t), question_bits(b, t)
        groups = []
        clients = sorted(set(qa[side]) & set(qb[side]), key=int)
        for k in clients:
            ha, hb = qa["ids_sha1"].get(k), qb["ids_sha1"].get(k)
            xa, xb = qa[side][k], qb[side][k]
            if ha != hb or xa.shape != xb.shape:
                raise ValueError(
                    f"{a.name} and {b.name}: client {k} was evaluated on different test "
                    "questions; they cannot be paired"
                )
            d = xa.astype(np.float64) - xb.astype(np.float64)
            if kind is not None:
                d = d[question_kinds(a, k, ha or "") == kind]
            if d.size:
                groups.append(d)
        if groups:
            per_seed.append([(1.0 / len(groups), d) for d in groups])
            rounds.append(t)
    if not per_seed:
        return None
    return replace(seed_question_bootstrap(per_seed), rounds=tuple(rounds))


def _run_filter_settings(run_dir: Path) -> tuple[float, str, float | None]:
    """(α, sample signal, unteachable_reward) of a run's filters (config.yaml; defaults of old runs)."""
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    f = cfg.get("filter", {}) or {}
    floor = f.get("unteachable_reward")  # absent in runs made before it existed: none
    return (
        float(f.get("alpha", 0.5)),
        str(f.get("sample_signal", "loss_drop")),
        None if floor is None else float(floor),
    )


def realised_rewards(run_dir: Path) -> dict[tuple[str, str], dict[int, np.ndarray]]:
    """{(client k, direction): {round: r_i of that learner's picks}} from learning/, spec §3's
    reward (lada.filter.rewards.RewardTracker: α and signal from the run's config), chained
    over the rounds in order. Where the run saved which picks were trained, only those count
    (untrained picks' losses move by drift alone); where the run also saved the teacher paths
    (a path exchange), its untrained picks count at the run's ``filter.unteachable_reward``
    (lada.filter.rewarding), as the filter learnt them. Rounds without picks are absent."""
    from lada.filter.rewards import RewardTracker

    alpha, signal, floor = _run_filter_settings(run_dir)
    trackers: dict[tuple[str, str], RewardTracker] = {}
    out: dict[tuple[str, str], dict[int, np.ndarray]] = {}
    for p in sorted((run_dir / "learning").glob("round_*.json")):
        t = int(p.stem.split("_")[1])
        for k, per in json.loads(p.read_text()).items():
            for d, losses in per.items():
                n_unteachable = 0
                if "trained" in losses:  # only trained picks are rewarded
                    ok = losses["trained"]
                    if "paths" in losses:
                        n_unteachable = sum(1 for a in ok if not a)
                    keep = [i for i, a in enumerate(ok) if a]
                    losses = {key: [v[i] for i in keep] for key, v in losses.items()}
                r = np.zeros(0)
                if losses["ids"]:
                    tr = trackers.setdefault((k, d), RewardTracker(alpha, signal))  # type: ignore[arg-type]
                    r = tr.step(losses["loss_after"], losses["loss_before"], losses["margin"])
                if floor is not None and n_unteachable:
                    r = np.concatenate([r, np.full(n_unteachable, floor)])
                if r.size:
                    out.setdefault((k, d), {})[t] = r
    return out


def filter_lift(
    runs_lada: Sequence[Path], runs_random: Sequence[Path]
) -> dict[tuple[str, str], dict[int | str, Estimate]]:
    """{(k, direction): {round: Estimate, "all": Estimate}}: LaDa's picks' mean realised reward
    minus random allocation's, same seeds (``runs_lada[i]`` and ``runs_random[i]`` share a
    seed); "all" is, per seed, the mean over rounds of the per-round lift (over the seeds that
    have every round of this learner)."""
    # per[learner][round][seed] = (LaDa's rewards, random's rewards)
    per: dict[tuple[str, str], dict[int, dict[int, tuple[np.ndarray, np.ndarray]]]] = {}
    for i, (a, b) in enumerate(zip(runs_lada, runs_random, strict=True)):
        if not (a / "learning").exists() or not (b / "learning").exists():
            continue
        ra, rb = realised_rewards(a), realised_rewards(b)
        for learner in set(ra) & set(rb):
            for t in set(ra[learner]) & set(rb[learner]):
                per.setdefault(learner, {}).setdefault(t, {})[i] = (ra[learner][t], rb[learner][t])
    out: dict[tuple[str, str], dict[int | str, Estimate]] = {}
    for learner in sorted(per):
        by_round = per[learner]
        res: dict[int | str, Estimate] = {}
        for t in sorted(by_round):
            pairs = [by_round[t][i] for i in sorted(by_round[t])]
            res[t] = seed_question_bootstrap([[(1.0, a), (-1.0, b)] for a, b in pairs])
        rounds = sorted(by_round)
        seeds = sorted(set.intersection(*(set(by_round[t]) for t in rounds)))
        if seeds:
            w = 1.0 / len(rounds)
            res["all"] = seed_question_bootstrap(
                [
                    [g for t in rounds for g in ((w, by_round[t][i][0]), (-w, by_round[t][i][1]))]
                    for i in seeds
                ]
            )
        out[learner] = res
    return out


# ---- seed-level intervals (the decisive suite) ------------------------------------------------
#
# With S seeds, each seed's paired difference d_s (the mean over its clients, and over its
# test questions, of A − B) is one draw; the seeds are independent (each draws its own split and
# training noise), so the interval is over the S values d_s. At S = 8 a percentile bootstrap of
# their mean undercovers (its spread is the plug-in variance, biased low by (S − 1)/S, and it has
# no small-sample tail); the paired t-interval mean ± t_{0.975, S−1}·sd/√S covers close to 95 %
# for normal and moderately skewed differences: :func:`coverage_check` measures both.

Side = Literal["slm", "llm", "both"]
MARGIN = 0.03  # the decisive suite's equivalence margin: ±3 accuracy points
Outcome = Literal["helps", "harms", "does not help", "inconclusive"]


def paired_t_interval(diffs: Sequence[float] | np.ndarray, level: float = LEVEL) -> Estimate:
    """mean(d) ± t_{(1+level)/2, n−1}·sd(d)/√n over the per-seed differences ``diffs``."""
    from scipy import stats as sps

    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        raise ValueError(f"a t-interval needs at least 2 seeds, got {d.size}")
    m = float(d.mean())
    half = float(sps.t.ppf((1 + level) / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return Estimate(m, m - half, m + half, int(d.size))


def percentile_bootstrap(
    diffs: Sequence[float] | np.ndarray,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    rng_seed: int = 0,
) -> Estimate:
    """Percentile bootstrap interval of the mean of the per-seed differences ``diffs``."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 1:
        raise ValueError("a bootstrap needs at least 1 seed")
    rng = np.random.default_rng(rng_seed)
    reps = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [tail, 1.0 - tail])
    return Estimate(float(d.mean()), float(lo), float(hi), int(d.size))


def _draw(kind: str, rng: np.random.Generator, size: tuple[int, ...], mean: float, sd: float):
    """Paired differences with a known ``mean`` and ``sd``: normal, or right-skewed (a centred
    exponential, skewness 2), or heavy-tailed (Student t with 3 d.o.f., scaled)."""
    if kind == "normal":
        return rng.normal(mean, sd, size)
    if kind == "skewed":
        return mean + sd * (rng.exponential(1.0, size) - 1.0)
    if kind == "heavy":
        return mean + sd * rng.standard_t(3, size) / np.sqrt(3.0)
    raise ValueError(f"unknown distribution {kind!r}")


DISTRIBUTIONS = ("normal", "skewed", "heavy")


def coverage_check(
    n_seeds: int = 8,
    n_sims: int = 2000,
    n_boot: int = 1000,
    rng_seed: int = 0,
    mean: float = 0.02,
    sd: float = 0.04,
    distributions: Sequence[str] = DISTRIBUTIONS,
) -> dict[tuple[str, str], float]:
    """{(distribution, "t" | "bootstrap"): how often the 95 % interval over ``n_seeds`` paired
    differences covers their true mean}, over ``n_sims`` simulated experiments."""
    from scipy import stats as sps

    rng = np.random.default_rng(rng_seed)
    out: dict[tuple[str, str], float] = {}
    tq = sps.t.ppf((1 + LEVEL) / 2, n_seeds - 1)
    tail = (1.0 - LEVEL) / 2.0
    for kind in distributions:
        d = _draw(kind, rng, (n_sims, n_seeds), mean, sd)
        m, s = d.mean(axis=1), d.std(axis=1, ddof=1)
        half = tq * s / np.sqrt(n_seeds)
        out[kind, "t"] = float(np.mean((m - half <= mean) & (mean <= m + half)))
        idx = rng.integers(0, n_seeds, size=(n_sims, n_boot, n_seeds))
        reps = np.take_along_axis(d[:, None, :].repeat(n_boot, axis=1), idx, axis=2).mean(axis=2)
        lo, hi = np.quantile(reps, [tail, 1.0 - tail], axis=1)
        out[kind, "bootstrap"] = float(np.mean((lo <= mean) & (mean <= hi)))
    return out


def margin_outcome(lo: float, hi: float, margin: float = MARGIN) -> Outcome:
    """The decisive suite's verdict on a 95 % interval [lo, hi] of A − B: "helps" when it lies
    above 0, "harms" below 0, "does not help" when it holds 0 and lies inside ±margin
    (equivalence), else "inconclusive"."""
    if lo > 0:
        return "helps"
    if hi < 0:
        return "harms"
    if -margin < lo and hi < margin:
        return "does not help"
    return "inconclusive"


def seed_deltas(
    runs_a: Sequence[Path], runs_b: Sequence[Path], side: Side
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Per seed, the paired accuracy difference A − B at the last round both completed: the
    mean over clients of each client's mean per-question difference (``side`` "both": the
    mean of the SLM and the LLM differences), and the round each seed was compared at. Seeds
    without a completed trained round in both are left out. Raises when a pair was evaluated
    on different questions."""
    out, rounds = [], []
    sides: tuple[str, ...] = ("slm", "llm") if side == "both" else (side,)
    for a, b in zip(runs_a, runs_b, strict=True):
        ta, tb = last_round(a), last_round(b)
        if ta is None or tb is None or min(ta, tb) < 1:
            continue
        t = min(ta, tb)
        qa, qb = question_bits(a, t), question_bits(b, t)
        per_side = []
        for sd in sides:
            clients = sorted(set(qa[sd]) & set(qb[sd]), key=int)
            diffs = []
            for k in clients:
                xa, xb = qa[sd][k], qb[sd][k]
                if qa["ids_sha1"].get(k) != qb["ids_sha1"].get(k) or xa.shape != xb.shape:
                    raise ValueError(
                        f"{a.name} and {b.name}: client {k} was evaluated on different test "
                        "questions; they cannot be paired"
                    )
                if xa.size:
                    diffs.append(float(np.mean(xa.astype(np.float64) - xb.astype(np.float64))))
            if diffs:
                per_side.append(float(np.mean(diffs)))
        if len(per_side) == len(sides):
            out.append(float(np.mean(per_side)))
            rounds.append(t)
    return np.array(out), tuple(rounds)
