"""`lada bench --suite decisive` (ours): does learnability-aware allocation help?

The design (docs/results/decisive.md holds it with the predictions, written before any run):

* **arms** (method names of :mod:`lada.bench.suite`): ``alone`` (the plain host, plugin none),
  ``random`` (random picks among all of P), ``random_teachable`` (random picks among the
  candidates the teacher will teach: the same mask LaDa's filter ranks), ``lada`` and ``oracle``
  (:mod:`lada.federation.oracle`, a diagnostic upper bound); every pick-making arm has the same
  budget (``filter.budget``);
* **testbeds**: ``zoo`` (the embedded default's zoo models, every client's full test set of 500
  questions, all five arms, 5 rounds) and ``real`` (SmolLM2-135M as the LLM and two depth-pruned
  copies of clearly different capacity, 6 and 20 of its 30 layers, as the SLMs; public questions
  of 1-4 steps; 200 test questions per client; the primary pair ``random_teachable`` and
  ``lada`` only, 3 rounds: the cut that fits 8 hours on 2 cores);
* **seeds**: 8 per arm (seeds 0-7; a seed draws its own split), never fewer;
* **rehearsal**: none on any arm (``distill.slm_replay=0``: the plain host alone has no
  distillation step to rehearse in);
* **primary outcome**: on the real testbed, LaDa − random_teachable at the last round, the mean
  of the SLM and the LLM accuracy differences (each the mean over clients), with a paired 95 %
  t-interval over the 8 seeds (:func:`lada.bench.stats.paired_t_interval`; its coverage at 8
  seeds: :func:`lada.bench.stats.coverage_check`) and the verdict against an equivalence margin
  of ±3 points (:func:`lada.bench.stats.margin_outcome`);
* **selection precision** of LaDa, random_teachable and random against the oracle's would-be
  picks, per learner, direction and round (``oracle_diagnostic=true`` on the zoo's arms:
  oracle/round_NNN.json beside selections/round_NNN.json).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lada.bench.stats import (
    MARGIN,
    Estimate,
    margin_outcome,
    paired_t_interval,
    seed_deltas,
)
from lada.bench.suite import FULL_OVERRIDES, RunSpec, method_overrides

SEEDS = 8
# every arm, in table order; random_matched (ours, a follow-up control, real testbed only):
# random_teachable count-matched to the same seed's LaDa run (``allocation_counts_from``)
ARMS = ("alone", "random", "random_teachable", "lada", "oracle", "random_matched")
DESIGN_ARMS = ARMS[:5]  # the committed design's arms
HOST = "sft"
MIN_TEST_QUESTIONS = 200

# the zoo: the paper suite's full sizes (every client's 500 test questions, 5 rounds, no
# rehearsal), with the oracle's would-be picks recorded on the arms that pick
ZOO_OVERRIDES = list(FULL_OVERRIDES)

_LORA = (
    "{r: 16, alpha: 32, dropout: 0.0, target_modules: "
    "[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}"
)
# the real-checkpoint scenario with learnability spread (the real-cpu config's recipe, with
# SLMs of clearly different capacity, 1-4-step public and test questions, 200 test questions
# per client, 3 rounds)
REAL_OVERRIDES = [
    "rounds=3",
    "threads=1",
    "eval.initial=false",
    "eval.limit=null",
    "eval.max_new_tokens=96",  # a 4-step path: up to 74 SmolLM2 tokens
    "eval.batch_size=50",
    "server.model=smollm2-135m",
    "server.dtype=auto",
    f"server.lora={_LORA}",
    # 1-2-step warm-up: the LLM is right on short chains, wrong on long ones (teacher spread)
    "server.warmup={samples: 256, steps: [1, 2]}",
    "clients=["
    f"{{model: smollm2-135m-L6, dtype: auto, lora: {_LORA}}}, "
    f"{{model: smollm2-135m-L20, dtype: auto, lora: {_LORA}}}]",
    "data.kind=synthetic",
    "data.split.num_clients=2",
    "data.split.train_per_client=128",
    f"data.split.test_per_client={MIN_TEST_QUESTIONS}",
    "data.split.public_size=128",
    "data.split.max_steps=4",
    "data.split.train_steps=[1, 2]",
    "data.split.test_steps=[1, 4]",
    "data.split.public_steps=[1, 4]",
    "data.split.test_knowledge=private",
    # 8 local epochs: both SLMs learn their 1-step private facts (knowledge gap)
    "local.optim={lr: 2.0e-3, epochs: 8, batch_size: 8, warmup_steps: 4, max_length: 192}",
    "distill.slm_replay=0",
    "distill.llm_replay=16",
    "distill.max_new_tokens=96",
    "distill.gen_batch_size=32",
    "distill.slm_optim={lr: 1.0e-3, epochs: 1, batch_size: 8, warmup_ratio: 0.1, max_length: 192}",
    "distill.llm_optim={lr: 2.0e-3, epochs: 3, batch_size: 8, warmup_ratio: 0.1, max_length: 192}",
    "filter={budget: 24, cold_start_fraction: 0.25, hidden: 64, epochs: 5}",
]

# the real testbed first: the primary outcome's runs start first and finish first
TESTBEDS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "real": (REAL_OVERRIDES, ("random_teachable", "lada", "random_matched")),
    "zoo": (ZOO_OVERRIDES, DESIGN_ARMS),
}
PRIMARY = ("real", "lada", "random_teachable", "both")
# the arms whose picks are compared with the oracle's (they pick, and are not the oracle)
PICKING = ("random", "random_teachable", "lada", "random_matched")
DIAGNOSTIC_TESTBEDS = ("zoo",)  # where the oracle's would-be picks are recorded (cheap there)

# Expected core-seconds of one run (one torch thread), per testbed and arm: the zoo's from the
# rehearsal suite's measured runs (same sizes: host alone 164-194 s, random 223-245 s, LaDa
# 254-263 s) plus a quarter for the oracle's generation on all of P; the real testbed's from the
# real-cpu config's measured phases (per round on 2 threads: local training 89-116 s, paths
# 13-20 s, distillation 28-58 s, evaluation of 96 answers 6-7 s), scaled to 1-4-step questions
# (x1.7 tokens), 800 test answers per round and 3 rounds, x2 for one thread, plus 600 s for
# 8 local epochs instead of 4. The plan replaces them by the mean measured time of the finished
# runs of the same testbed and arm.
EXPECTED_SECONDS: dict[tuple[str, str], float] = {
    ("zoo", "alone"): 190.0,
    ("zoo", "random"): 300.0,
    ("zoo", "random_teachable"): 300.0,
    ("zoo", "lada"): 330.0,
    ("zoo", "oracle"): 300.0,
    ("real", "alone"): 2070.0,
    ("real", "random"): 2600.0,
    ("real", "random_teachable"): 2600.0,
    ("real", "lada"): 2700.0,
    ("real", "oracle"): 2800.0,
    ("real", "random_matched"): 2300.0,  # fewer picks than random_teachable's budget
}
BUDGET_HOURS = 8.0
CORES = 2


def matched_source(testbed: str, seed: int) -> str:
    """The run random_matched follows: the same testbed and seed's LaDa run."""
    return RunSpec(HOST, "lada", testbed, seed).name


def decisive_method_overrides(
    method: str, runs_dir: Path | None = None, testbed: str = "", seed: int = 0
) -> list[str]:
    """The arm's overrides (the bench's, plus the controls this suite adds); random_matched
    names the folder of the run it follows, in ``runs_dir`` (absolute)."""
    if method == "random_teachable":
        return ["plugin=lada", "allocation=random_teachable"]
    if method == "random_matched":
        src = (Path(runs_dir or "runs") / matched_source(testbed, seed)).resolve()
        return ["plugin=lada", "allocation=random_teachable", f"allocation_counts_from={src}"]
    if method == "oracle":
        return ["plugin=lada", "allocation=oracle"]
    return method_overrides(method)


def decisive_suite(
    seeds: int | None = None, runs_dir: Path | None = None
) -> tuple[list[RunSpec], list[str]]:
    """(runs, what the plan leaves out): every testbed's arms × seeds, seed-major (a seed's
    arms run together, so a suite cut short still pairs); ``runs_dir``: where the runs live
    (random_matched reads its LaDa run there, and starts after it)."""
    n = SEEDS if seeds is None else seeds
    if n < SEEDS:
        raise ValueError(f"the decisive suite's design fixes {SEEDS} seeds or more, not {n}")
    runs = []
    for testbed, (base, arms) in TESTBEDS.items():
        for seed in range(n):
            for arm in arms:
                arm_ov = decisive_method_overrides(arm, runs_dir, testbed, seed)
                ov = [*base, f"seed={seed}", f"host={HOST}", *arm_ov]
                if testbed in DIAGNOSTIC_TESTBEDS and arm in PICKING:
                    ov.append("oracle_diagnostic=true")
                after = matched_source(testbed, seed) if arm == "random_matched" else None
                runs.append(RunSpec(HOST, arm, testbed, seed, "main", tuple(ov), after))
    left = [
        f"{tb}: {', '.join(a for a in DESIGN_ARMS if a not in arms)} (the 8-hour cut: rounds "
        "and arms are cut on the real testbed, never seeds or test questions)"
        for tb, (_, arms) in TESTBEDS.items()
        if set(DESIGN_ARMS) - set(arms)
    ]
    left += [
        f"{tb}: random_matched (a follow-up control, on the real testbed only)"
        for tb, (_, arms) in TESTBEDS.items()
        if "random_matched" not in arms
    ]
    left.append("real: no selection precision (the oracle's generation on all of P every round)")
    return runs, left


# ---- the plan --------------------------------------------------------------------------------


def _measured_seconds(run_dir: Path) -> float | None:
    from lada.runner.metrics_file import read_metrics

    if not (run_dir / "metrics.jsonl").exists():
        return None
    recs = read_metrics(run_dir)
    return float(sum(r["seconds"].get("total", 0.0) for r in recs)) if recs else None


def expected_seconds(specs: Sequence[RunSpec], runs_dir: Path) -> dict[str, float]:
    """Each run's expected core-seconds: the mean measured time of the finished runs of its
    testbed and arm in ``runs_dir`` when there are any, else :data:`EXPECTED_SECONDS`."""
    from lada.bench.execute import run_state

    measured: dict[tuple[str, str], list[float]] = {}
    for s in specs:
        d = runs_dir / s.name
        if run_state(d) == "done" and (t := _measured_seconds(d)) is not None:
            measured.setdefault((s.scenario, s.method), []).append(t)
    return {
        s.name: float(np.mean(measured[s.scenario, s.method]))
        if (s.scenario, s.method) in measured
        else EXPECTED_SECONDS[s.scenario, s.method]
        for s in specs
    }


def plan_text(specs: Sequence[RunSpec], runs_dir: Path, jobs: int) -> str:
    """The planned runs, their state and expected time, and the expected wall time left."""
    from lada.bench.execute import run_state

    exp = expected_seconds(specs, runs_dir)
    lines = ["planned runs (state, expected core-minutes):"]
    left = 0.0
    for s in specs:
        state = run_state(runs_dir / s.name)
        if state != "done":
            left += exp[s.name]
        lines.append(f"  {s.name:45s} {state:8s} {exp[s.name] / 60:6.1f}")
    total = sum(exp.values())
    lines.append(
        f"{len(specs)} runs, {sum(run_state(runs_dir / s.name) == 'done' for s in specs)} done; "
        f"expected {total / 3600:.1f} core-hours in all, {left / 3600 / max(1, jobs):.1f} h of "
        f"wall time left with {jobs} job(s) (the design's budget: {BUDGET_HOURS:.0f} h on "
        f"{CORES} cores)"
    )
    return "\n".join(lines)


def planned_hours(specs: Sequence[RunSpec], cores: int = CORES) -> float:
    """The whole plan's expected wall hours on ``cores`` cores, from :data:`EXPECTED_SECONDS`."""
    return sum(EXPECTED_SECONDS[s.scenario, s.method] for s in specs) / 3600 / cores


# ---- selection precision ---------------------------------------------------------------------


def run_precision(run_dir: Path) -> dict[tuple[str, str], dict[int, float]]:
    """{(client k, direction): {round: |picks ∩ oracle picks| / |picks|}} from a run's
    selections/ and oracle/ (rounds with both, learners with picks)."""
    from lada.federation.oracle import selection_precision

    out: dict[tuple[str, str], dict[int, float]] = {}
    for p in sorted((run_dir / "oracle").glob("round_*.json")):
        sel_file = run_dir / "selections" / p.name
        if not sel_file.exists():
            continue
        t = int(p.stem.split("_")[1])
        orc, sel = json.loads(p.read_text()), json.loads(sel_file.read_text())
        for k, per in sel.items():
            for d, picks in per.items():
                if picks and d in orc.get(k, {}):
                    out.setdefault((k, d), {})[t] = selection_precision(picks, orc[k][d])
    return out


def precision_table(cells: dict[tuple[str, str], dict[int, Path]]) -> str:
    """Per testbed, arm and learner: the mean precision over seeds per round, with its paired
    95 % t-interval where there are ≥ 2 seeds, in %."""
    rows: list[tuple[str, str, str, dict[int, list[float]]]] = []
    for (testbed, arm), by_seed in sorted(cells.items()):
        if arm not in PICKING:
            continue
        per = [run_precision(d) for _, d in sorted(by_seed.items())]
        learners = sorted({ld for p in per for ld in p}, key=lambda x: (int(x[0]), x[1]))
        for k, d in learners:
            by_round: dict[int, list[float]] = {}
            for p in per:
                for t, v in p.get((k, d), {}).items():
                    if v == v:  # NaN: nothing picked
                        by_round.setdefault(t, []).append(v)
            who = f"SLM {k} ← LLM" if d == "S" else f"LLM ← SLM {k}"
            rows.append((testbed, arm, who, by_round))
    if not rows:
        return ""
    rounds = sorted({t for *_, br in rows for t in br})
    lines = [
        "| testbed | arm | learner | " + " | ".join(f"round {t}" for t in rounds) + " |",
        "|" + "---|" * (len(rounds) + 3),
    ]
    for testbed, arm, who, br in rows:
        cols = [_fmt_values(br.get(t, [])) for t in rounds]
        lines.append(f"| {testbed} | {arm} | {who} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def _fmt_values(vals: list[float]) -> str:
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{100 * vals[0]:.0f}"
    e = paired_t_interval(vals)
    return f"{100 * e.mean:.0f} [{100 * e.lo:.0f}, {100 * e.hi:.0f}] (n={e.n_seeds})"


# ---- tables ----------------------------------------------------------------------------------


def _cells(specs: Sequence[RunSpec], runs_dir: Path) -> dict[tuple[str, str], dict[int, Path]]:
    """{(testbed, arm): {seed: run folder}} of the finished runs (a partial run ends at an
    earlier round than its pair: it joins the tables once it is done)."""
    from lada.bench.execute import run_state

    out: dict[tuple[str, str], dict[int, Path]] = {}
    for s in specs:
        d = runs_dir / s.name
        if run_state(d) == "done":
            out.setdefault((s.scenario, s.method), {})[s.seed] = d
    return out


COMPARE_WITH = ("random_teachable", "random_matched", "random", "alone")
SIDES = (("both", "SLM+LLM"), ("slm", "SLM"), ("llm", "LLM"))


def paired_rows(cells: dict[tuple[str, str], dict[int, Path]]) -> list[dict[str, Any]]:
    """Every arm against random_teachable, random_matched, random and the host alone (each
    pair one way), per testbed and side: the paired Δ (A − B) over the seeds both have, its
    95 % t-interval and margin verdict."""
    rows, seen = [], set()
    for testbed in TESTBEDS:
        for a in ("lada", "oracle", "random_matched", "random_teachable", "random"):
            for b in COMPARE_WITH:
                if a == b or (testbed, a) not in cells or (testbed, b) not in cells:
                    continue
                if (testbed, b, a) in seen:  # the other way round is in the table
                    continue
                seen.add((testbed, a, b))
                seeds = sorted(set(cells[testbed, a]) & set(cells[testbed, b]))
                ra = [cells[testbed, a][s] for s in seeds]
                rb = [cells[testbed, b][s] for s in seeds]
                for side, label in SIDES:
                    d, rounds = seed_deltas(ra, rb, side)  # type: ignore[arg-type]
                    est: Estimate | None = paired_t_interval(d) if d.size >= 2 else None
                    rows.append(
                        {
                            "testbed": testbed,
                            "a": a,
                            "b": b,
                            "side": label,
                            "primary": (testbed, a, b, side) == PRIMARY,
                            "est": est,
                            "rounds": rounds,
                            "outcome": margin_outcome(est.lo, est.hi) if est else "–",
                        }
                    )
    return rows


def paired_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| testbed | comparison | accuracy | Δ pts [95 % t-interval] | verdict (±3 pts) | seeds "
        "| round |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: not r["primary"]):
        est = r["est"]
        cmp_ = f"{r['a']} − {r['b']}"
        if r["primary"]:
            cmp_ = f"**{cmp_} (primary)**"
        rounds = ", ".join(sorted({str(t) for t in r["rounds"]})) or "–"
        lines.append(
            f"| {r['testbed']} | {cmp_} | {r['side']} | {est.fmt() if est else '–'} | "
            f"{r['outcome']} | {est.n_seeds if est else len(r['rounds'])} | {rounds} |"
        )
    return "\n".join(lines)


def accuracy_markdown(cells: dict[tuple[str, str], dict[int, Path]]) -> str:
    """Last-round accuracy per testbed and arm, mean ± sd over seeds, in %."""
    from lada.runner.metrics_file import read_metrics

    lines = ["| testbed | arm | SLM % | LLM % | seeds | rounds |", "|---|---|---|---|---|---|"]
    for testbed in TESTBEDS:
        for arm in ARMS:
            if (testbed, arm) not in cells:
                continue
            slm, llm, rounds = [], [], set()
            for d in cells[testbed, arm].values():
                recs = [r for r in read_metrics(d) if r["round"] >= 1]
                if recs:
                    slm.append(recs[-1]["slm_accuracy_mean"])
                    llm.append(recs[-1]["llm_accuracy_mean"])
                    rounds.add(recs[-1]["round"])
            lines.append(
                f"| {testbed} | {arm} | {_ms(slm)} | {_ms(llm)} | {len(slm)} | "
                f"{', '.join(map(str, sorted(rounds))) or '–'} |"
            )
    return "\n".join(lines)


def rounds_markdown(cells: dict[tuple[str, str], dict[int, Path]]) -> str:
    """Per testbed and arm: the mean SLM and LLM accuracy over seeds after each round, in %
    (round 0: before any, where evaluated)."""
    from lada.runner.metrics_file import read_metrics

    rows, rounds = [], set()
    for testbed in TESTBEDS:
        for arm in ARMS:
            if (testbed, arm) not in cells:
                continue
            by: dict[int, tuple[list[float], list[float]]] = {}
            for d in cells[testbed, arm].values():
                for r in read_metrics(d):
                    if r.get("slm_accuracy_mean") is None:
                        continue
                    slm, llm = by.setdefault(int(r["round"]), ([], []))
                    slm.append(r["slm_accuracy_mean"])
                    llm.append(r["llm_accuracy_mean"])
            rounds |= set(by)
            rows.append((testbed, arm, by))
    if not rows:
        return ""
    order = sorted(rounds)
    lines = [
        "| testbed | arm | " + " | ".join(f"round {t}: SLM / LLM" for t in order) + " |",
        "|" + "---|" * (len(order) + 2),
    ]
    for testbed, arm, by in rows:
        cols = [
            f"{100 * np.mean(by[t][0]):.1f} / {100 * np.mean(by[t][1]):.1f} (n={len(by[t][0])})"
            if t in by
            else "–"
            for t in order
        ]
        lines.append(f"| {testbed} | {arm} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def picks_markdown(cells: dict[tuple[str, str], dict[int, Path]]) -> str:
    """Per testbed and arm: the mean number of picks per learner and round, and of teachable
    candidates (|P| minus what the mask took out), for each SLM (taught by the LLM) and for the
    LLM (taught by each SLM); the arms that pick at most ``filter.budget`` may pick fewer."""
    import yaml

    from lada.runner.metrics_file import read_metrics

    lines = [
        "| testbed | arm | picks per SLM | its teachable candidates | picks for the LLM per SLM "
        "| their teachable candidates | learner-rounds |",
        "|---|---|---|---|---|---|---|",
    ]
    for testbed in TESTBEDS:
        for arm in ARMS:
            if arm == "alone" or (testbed, arm) not in cells:
                continue
            got: dict[str, list[float]] = {"S": [], "L": [], "cS": [], "cL": []}
            for d in cells[testbed, arm].values():
                cfg = yaml.safe_load((d / "config.yaml").read_text())
                size = int(cfg["data"]["split"]["public_size"])
                for r in read_metrics(d):
                    if r["round"] < 1:
                        continue
                    for k, sel in (r.get("selected") or {}).items():
                        masked = (r.get("masked") or {}).get(k, {})
                        for side in ("S", "L"):
                            got[side].append(float(sel.get(side, 0)))
                            got["c" + side].append(float(size - masked.get(side, 0)))

            def mean(v: list[float]) -> str:
                return f"{np.mean(v):.1f}" if v else "–"

            lines.append(
                f"| {testbed} | {arm} | {mean(got['S'])} | {mean(got['cS'])} | {mean(got['L'])} "
                f"| {mean(got['cL'])} | {len(got['S'])} |"
            )
    return "\n".join(lines)


def _ms(vals: list[float]) -> str:
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{100 * vals[0]:.1f}"
    return f"{100 * np.mean(vals):.1f} ± {100 * np.std(vals, ddof=1):.1f}"


def write_decisive(
    specs: Sequence[RunSpec], runs_dir: Path, path: Path, command: str, notes: list[str]
) -> None:
    """results.md of the decisive suite: accuracies, the paired comparisons (primary first),
    the selection precision and what the plan left out."""
    cells = _cells(specs, runs_dir)
    rows = paired_rows(cells)
    prec = precision_table(cells)
    parts = [
        "# LaDa bench: decisive suite",
        "",
        f"Command: `{command}`  ",
        f"Design: {SEEDS} seeds per arm; primary outcome {PRIMARY[1]} − {PRIMARY[2]} on the "
        f"{PRIMARY[0]} testbed, mean of the SLM and LLM accuracy differences at the last round; "
        f"paired 95 % t-interval over seeds; equivalence margin ±{100 * MARGIN:.0f} points "
        "(docs/results/decisive.md).",
        "",
        "## Accuracy at the last round",
        "",
        accuracy_markdown(cells),
        "",
        "## Accuracy by round",
        "",
        "Mean over seeds of the mean over clients, in %.",
        "",
        rounds_markdown(cells),
        "",
        "## Picks per learner and round",
        "",
        "Mean over seeds, learners and rounds. Teachable candidates: the public questions the "
        "mask leaves (the teacher's path verified, or self-consistent on unlabelled questions). "
        "random picks among all of P; random_teachable and the oracle pick the budget within the "
        "mask (fewer where fewer are teachable); LaDa's filters pick at most the budget; "
        "random_matched as many as the same seed's LaDa run, within the mask.",
        "",
        picks_markdown(cells),
        "",
        "## Paired differences",
        "",
        "Δ = arm A − arm B in accuracy points, per seed the mean over clients of each client's "
        "difference on the same test questions; interval: paired t over the seeds "
        "(`lada.bench.stats.paired_t_interval`). Verdict: helps (interval above 0), harms "
        "(below 0), does not help (holds 0, inside ±3 points), inconclusive (otherwise).",
        "",
        paired_markdown(rows),
    ]
    if prec:
        parts += [
            "",
            "## Selection precision against the oracle",
            "",
            "|picks ∩ oracle's would-be picks| / |picks| per learner and round, in %, mean over "
            "seeds [95 % t-interval]. Random picks of b out of n candidates score b/n on "
            "average when the oracle has b picks among them.",
            "",
            prec,
        ]
    from lada.bench.execute import run_state

    partial = [s.name for s in specs if run_state(runs_dir / s.name) == "partial"]
    if partial:
        notes = [*notes, f"not in the tables until done (partial): {', '.join(partial)}"]
    if notes:
        parts += ["", "## Not run", ""] + [f"- {n}" for n in notes]
    path.write_text("\n".join(parts) + "\n")
