"""The decisive suite: its plan (arms, seeds, test sizes, rehearsal, budget, time), the interval
method's coverage at 8 seeds, the margin verdicts, selection precision and the tables it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lada.bench import decisive as D
from lada.bench import stats as S
from lada.config import load_config


def _ov(spec, key: str) -> str | None:
    vals = [o.split("=", 1)[1] for o in spec.overrides if o.startswith(key + "=")]
    return vals[-1] if vals else None


def test_plan_arms_seeds_test_sizes_rehearsal_and_time(tmp_path: Path) -> None:
    specs, left = D.decisive_suite(runs_dir=tmp_path)
    zoo = {s.method for s in specs if s.scenario == "zoo"}
    real = {s.method for s in specs if s.scenario == "real"}
    assert zoo == {"alone", "random", "random_teachable", "lada", "oracle"}
    assert {"random_teachable", "lada"} <= real  # the primary pair runs on the real testbed
    assert "random_matched" in real  # the follow-up control, count-matched to LaDa's picks
    for tb in ("zoo", "real"):
        for arm in {s.method for s in specs if s.scenario == tb}:
            seeds = sorted(s.seed for s in specs if s.scenario == tb and s.method == arm)
            assert seeds == list(range(8)), (tb, arm)
    assert len({s.name for s in specs}) == len(specs)
    for s in specs:
        assert _ov(s, "distill.slm_replay") == "0"  # the same rehearsal (none) on every arm
        assert _ov(s, "allocation_count") is None  # every arm picks filter.budget
        if s.method == "random_matched":  # random_teachable, as many as the seed's LaDa run
            lada = f"sft__lada__{s.scenario}__s{s.seed}"
            assert _ov(s, "allocation_counts_from") == str(tmp_path.resolve() / lada)
            assert s.after == lada and lada in {x.name for x in specs}
            assert _ov(s, "allocation") == "random_teachable" and _ov(s, "plugin") == "lada"
        else:
            assert s.after is None
        if s.method in ("random_teachable", "random_matched"):
            assert _ov(s, "allocation") == "random_teachable" and _ov(s, "plugin") == "lada"
            continue  # its allocation value belongs to the method's own code
        cfg = load_config(None, list(s.overrides))
        n_test = cfg.data.split.get("test_per_client", 500)  # the split's default: 500
        assert n_test >= 200 and cfg.eval.limit is None, s.name  # every question, >= 200
        assert cfg.oracle_diagnostic == (s.scenario == "zoo" and s.method in D.PICKING)
        assert cfg.plugin == ("none" if s.method == "alone" else "lada")
        if s.scenario == "real":
            assert [c.model for c in cfg.clients] == ["smollm2-135m-L6", "smollm2-135m-L20"]
            assert cfg.data.split["public_steps"] == [1, 4]
    budgets = {
        (s.scenario, _ov(s, "filter.budget") or _ov(s, "filter"))
        for s in specs
        if s.method != "alone"
    }
    assert len({tb for tb, _ in budgets}) == len(budgets)  # one budget per testbed
    # the committed design fits 8 hours; the follow-up control comes on top
    assert D.planned_hours([s for s in specs if s.method in D.DESIGN_ARMS]) <= D.BUDGET_HOURS
    assert any("real" in x for x in left)
    with pytest.raises(ValueError, match="8 seeds"):
        D.decisive_suite(seeds=3)


def test_plan_text_prints_every_run_and_uses_measured_times(tmp_path: Path) -> None:
    specs, _ = D.decisive_suite()
    runs = tmp_path / "runs"
    done = next(s for s in specs if s.scenario == "zoo" and s.method == "lada")
    d = runs / done.name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("rounds: 5\n")
    (d / "state.json").write_text(json.dumps({"last_complete_round": 5}))
    (d / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"round": t, "seconds": {"total": 60.0}}) for t in range(1, 6))
    )
    exp = D.expected_seconds(specs, runs)
    lada_zoo = [s.name for s in specs if s.scenario == "zoo" and s.method == "lada"]
    assert all(exp[n] == 300.0 for n in lada_zoo)  # measured 5 × 60 s replaces the default
    text = D.plan_text(specs, runs, jobs=2)
    assert all(s.name in text for s in specs)
    assert f"{len(specs)} runs, 1 done" in text and "2 job(s)" in text


def test_t_interval_covers_at_8_seeds_and_the_bootstrap_does_not() -> None:
    cov = S.coverage_check(n_seeds=8, n_sims=1000, n_boot=300, rng_seed=0)
    assert abs(cov["normal", "t"] - 0.95) < 0.025
    assert cov["heavy", "t"] > 0.93
    assert cov["normal", "bootstrap"] < 0.93  # the percentile bootstrap undercovers at 8 seeds
    for kind in S.DISTRIBUTIONS:
        assert cov[kind, "t"] > cov[kind, "bootstrap"]


def test_paired_t_interval_and_margin_outcome() -> None:
    d = [0.01, 0.03, 0.02, 0.04]
    e = S.paired_t_interval(d)
    half = 3.182446305284263 * np.std(d, ddof=1) / 2  # t_{0.975, 3}
    assert e.mean == pytest.approx(0.025) and e.hi - e.mean == pytest.approx(half)
    assert S.paired_t_interval([0.1, 0.1]).lo == pytest.approx(0.1)
    with pytest.raises(ValueError):
        S.paired_t_interval([0.1])
    assert S.margin_outcome(0.001, 0.05) == "helps"
    assert S.margin_outcome(-0.05, -0.001) == "harms"
    assert S.margin_outcome(-0.02, 0.025) == "does not help"
    assert S.margin_outcome(-0.02, 0.04) == "inconclusive"


def _fake_run(d: Path, bits: dict[str, dict[str, str]], sel=None, orc=None) -> None:
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("rounds: 1\ndata: {split: {public_size: 10}}\n")
    (d / "state.json").write_text(json.dumps({"last_complete_round": 1}))
    q = {**bits, "ids_sha1": {k: f"h{k}" for k in bits["llm"]}}
    (d / "questions").mkdir()
    (d / "questions" / "round_001.json").write_text(json.dumps(q))
    acc = {
        s: float(np.mean([np.mean([c == "1" for c in v]) for v in bits[s].values()])) for s in bits
    }
    rec = {
        "round": 1,
        "slm_accuracy_mean": acc["slm"],
        "llm_accuracy_mean": acc["llm"],
        "seconds": {"total": 1.0},
    }
    if sel is not None:  # counts as the runner records them; the mask took out 6 and 8 of 10
        rec["selected"] = {k: {side: len(v) for side, v in s.items()} for k, s in sel.items()}
        rec["masked"] = {k: {"S": 6, "L": 8} for k in sel}
    (d / "metrics.jsonl").write_text(json.dumps(rec) + "\n")
    for sub, obj in (("selections", sel), ("oracle", orc)):
        if obj is not None:
            (d / sub).mkdir()
            (d / sub / "round_001.json").write_text(json.dumps(obj))


def test_seed_deltas_precision_and_the_tables(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    specs = [
        s
        for s in D.decisive_suite()[0]
        if s.scenario == "zoo" and s.method in ("lada", "random_teachable") and s.seed < 3
    ]
    for s in specs:
        if s.method == "lada":  # SLM: +1/4 on client 0, 0 on client 1; LLM: +1/4 everywhere
            slm = {"0": "1100", "1": "1000"}
            llm = {"0": "1110", "1": "1100"}
            sel = {"0": {"S": ["a", "b", "c", "d"], "L": ["a"]}}
        else:
            slm = {"0": "1000", "1": "1000"}
            llm = {"0": "1100", "1": "1000"}
            sel = {"0": {"S": ["a", "x", "y", "z"], "L": []}}
        orc = {"0": {"S": ["a", "b", "c", "q"], "L": ["b"]}}
        _fake_run(runs / s.name, {"slm": slm, "llm": llm}, sel, orc)
    by = {m: [runs / s.name for s in specs if s.method == m] for m in ("lada", "random_teachable")}
    d_slm, rounds = S.seed_deltas(by["lada"], by["random_teachable"], "slm")
    assert d_slm.tolist() == pytest.approx([0.125] * 3) and rounds == (1, 1, 1)
    d_both, _ = S.seed_deltas(by["lada"], by["random_teachable"], "both")
    assert d_both.tolist() == pytest.approx([(0.125 + 0.25) / 2] * 3)
    prec = D.run_precision(by["lada"][0])
    assert prec == {("0", "S"): {1: 0.75}, ("0", "L"): {1: 0.0}}
    assert D.run_precision(by["random_teachable"][0]) == {("0", "S"): {1: 0.25}}  # no picks: absent
    # a partial run (an earlier round than its pair) stays out of the tables, named below them
    late = next(s for s in D.decisive_suite()[0] if s.scenario == "zoo" and s.method == "oracle")
    _fake_run(runs / late.name, {"slm": slm, "llm": llm}, sel, orc)
    (runs / late.name / "config.yaml").write_text("rounds: 2\ndata: {split: {public_size: 10}}\n")
    out = tmp_path / "results.md"
    D.write_decisive([*specs, late], runs, out, "lada bench --suite decisive", ["note"])
    text = out.read_text()
    assert "| zoo | lada − random_teachable | SLM | +12.5 [+12.5, +12.5] | helps | 3 | 1 |" in text
    assert "| zoo | lada | SLM 0 ← LLM | 75 [75, 75] (n=3) |" in text
    assert "| zoo | lada | 4.0 | 4.0 | 1.0 | 2.0 | 3 |" in text  # picks, candidates per learner
    assert "| zoo | random_teachable | 4.0 | 4.0 | 0.0 | 2.0 | 3 |" in text
    assert "- note" in text
    assert "| zoo | oracle |" not in text and f"(partial): {late.name}" in text


def test_pair_on_different_questions_is_refused(tmp_path: Path) -> None:
    _fake_run(tmp_path / "a", {"slm": {"0": "10"}, "llm": {"0": "10"}})
    _fake_run(tmp_path / "b", {"slm": {"0": "101"}, "llm": {"0": "101"}})
    with pytest.raises(ValueError, match="different test questions"):
        S.seed_deltas([tmp_path / "a"], [tmp_path / "b"], "slm")


def test_premise_checks_read_the_gap_cells() -> None:
    from lada.bench.premise import cells_markdown, premise_checks
    from lada.eval.gaps import GapCell

    def cell(client, model, stage, kind, steps, correct):
        return GapCell(client, model, model, stage, kind, steps, 10, correct)

    cells = []
    for k in (0, 1):
        cells += [cell(k, "llm", "base", "general", s, c) for s, c in ((1, 10), (2, 8), (3, 3))]
        cells += [cell(k, "llm", "base", "private", 1, 1)]
        cells += [cell(k, "slm", "local", "private", 1, 9 - k)]  # gaps 0.8 and 0.7
        # what each SLM can learn: client 1 far better at 3 steps (spread 0.5)
        cells += [
            cell(k, "slm", "capacity", "general", s, c)
            for s, c in ((1, 10), (2, 9), (3, 2 + 5 * k))
        ]
    checks = premise_checks(cells)
    assert [c["holds"] for c in checks] == [True, True, True]
    assert [round(c["value"], 2) for c in checks] == [0.7, 0.5, 0.7]
    flat = [c for c in cells if not (c.stage == "capacity" and c.num_steps == 3)]
    flat += [cell(k, "slm", "capacity", "general", 3, 4) for k in (0, 1)]
    assert premise_checks(flat)[1]["holds"] is False  # the SLMs learn alike: no learner spread
    assert "| 0 | LLM llm (base) | 100 | 80 | 30 | 10 |" in cells_markdown(cells)


def test_premise_belongs_to_the_decisive_suite(tmp_path: Path) -> None:
    from lada.bench.run import bench

    with pytest.raises(ValueError, match="decisive"):
        bench(tmp_path, suite="core", premise=True)


def test_bench_prints_the_plan_before_anything_runs_and_writes_the_tables(tmp_path: Path) -> None:
    from lada.bench.run import bench

    said: list[str] = []
    summary = bench(tmp_path, suite="decisive", tables_only=True, log=said.append, jobs=2)
    plan = next(s for s in said if s.startswith("planned runs"))
    specs, _ = D.decisive_suite()
    assert all(s.name in plan for s in specs) and "h of wall time left with 2 job(s)" in plan
    assert plan.index("sft__lada__real__s0") < plan.index("sft__lada__zoo__s0")  # primary first
    assert summary["runs"] == len(specs) and summary["executed"] == len(specs)
    text = (tmp_path / "results.md").read_text()
    assert "decisive suite" in text and "primary outcome lada − random_teachable" in text


def test_premise_measures_only_the_named_testbeds_and_keeps_the_others(
    tmp_path: Path, tiny_overrides: list[str], monkeypatch
) -> None:
    from lada.bench import premise as P

    tiny = [*tiny_overrides, "data.split.max_steps=4", "data.split.test_steps=[1, 4]"]
    monkeypatch.setattr(D, "TESTBEDS", {"tiny": (tiny, ()), "other": (["rounds=1"], ())})
    monkeypatch.setattr(P, "CAPACITY_STEPS", {"tiny": 2, "other": 2})
    monkeypatch.setattr(P, "PROBES", 2)
    root = tmp_path / "premise"
    root.mkdir()
    cell = {"client": 0, "model": "llm", "name": "m", "stage": "base", "kind": "general"}
    kept = {
        "overrides": ["rounds=1", "seed=0", f"host={D.HOST}", "plugin=none"],
        "cells": [cell | {"num_steps": 1, "n": 30, "correct": 30, "accuracy": 1.0}],
        "checks": [{"check": "kept check", "value": 0.5, "threshold": 0.3, "holds": True}],
    }
    (root / "other.json").write_text(json.dumps(kept))
    with pytest.raises(ValueError, match="no testbed"):
        P.measure_premise(tmp_path, log=lambda _m: None, testbeds=["nope"])
    res = P.measure_premise(tmp_path, log=lambda _m: None, testbeds=["tiny"])
    assert set(res) == {"tiny", "other"} and res["other"] == kept["checks"]
    assert json.loads((root / "other.json").read_text()) == kept  # not measured again
    measured = json.loads((root / "tiny.json").read_text())
    assert measured["overrides"][: len(tiny)] == tiny and all(
        c["n"] == 2 for c in measured["cells"]
    )
    md = (root / "premise.md").read_text()
    assert "## tiny (measured now)" in md and "## other (measured earlier)" in md
    assert "kept check" in md


def test_a_run_that_reads_another_starts_after_it(tmp_path: Path, monkeypatch) -> None:
    """random_matched reads its LaDa run's picks: the bench starts it once that run has ended
    (done or failed), in plan order otherwise; a run whose source is outside the plan is ready."""
    from lada.bench import execute as E
    from lada.bench.suite import RunSpec

    a, b = RunSpec("sft", "lada", "t", 0), RunSpec("sft", "random_teachable", "t", 0)
    m = RunSpec("sft", "random_matched", "t", 0, after=a.name)
    assert E.next_ready([m, b, a], ()) == b
    assert E.next_ready([m], [a]) is None  # its source still runs
    assert E.next_ready([m], ()) == m  # ended, or not in this plan
    order: list[str] = []
    monkeypatch.setattr(E, "prepare_models_for", lambda specs: None)
    loop = RunSpec("sft", "x", "t", 0, after="sft__y__t__s0")
    for jobs in (1, 2):
        with pytest.raises(ValueError, match="wait for each other"):
            E.execute([loop, RunSpec("sft", "y", "t", 0, after=loop.name)], tmp_path, jobs=jobs)
    monkeypatch.setattr(
        E,
        "execute_one",
        lambda s, d: order.append(s.name) or {"name": s.name, "status": "ran", "seconds": 0.0},
    )
    E.execute([m, b, a], tmp_path, jobs=1, log=lambda *_: None)
    assert order == [b.name, a.name, m.name]


@pytest.mark.slow
def test_a_count_matched_run_picks_as_many_as_the_lada_run_it_follows(tmp_path: Path) -> None:
    """End to end on tiny models, two jobs: the bench starts random_matched after its LaDa run
    and its picks match that run's counts per learner, direction and round."""
    from lada.bench.execute import execute
    from lada.bench.suite import RunSpec
    from lada.config.presets import TINY

    runs = (tmp_path / "runs").resolve()
    base = [*TINY, "rounds=2", "seed=3"]
    lada = RunSpec("sft", "lada", "t", 3, "main", tuple(base))
    follow = [f"allocation_counts_from={runs / lada.name}", "allocation=random_teachable"]
    matched = RunSpec("sft", "random_matched", "t", 3, "main", (*base, *follow), after=lada.name)
    statuses = execute([matched, lada], tmp_path, jobs=2, log=lambda *_: None)
    assert [s["status"] for s in statuses] == ["ran", "ran"]
    import yaml

    from lada.runner.metrics_file import read_metrics

    size = int(
        yaml.safe_load((runs / lada.name / "config.yaml").read_text())["data"]["split"][
            "public_size"
        ]
    )
    recs = [{r["round"]: r for r in read_metrics(runs / s.name)} for s in (lada, matched)]
    picked = 0
    for r in (1, 2):
        sel = [
            json.loads((runs / s.name / "selections" / f"round_{r:03d}.json").read_text())
            for s in (lada, matched)
        ]
        for k, per in sel[0].items():
            for d, ids in per.items():
                teachable = size - recs[1][r]["masked"][k][d]
                assert len(sel[1][k][d]) == min(len(ids), teachable), (r, k, d)
                picked += len(ids)
    assert picked > 0
