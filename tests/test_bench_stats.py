"""The bench's paired confidence intervals, verdicts and filter lift (lada.bench.stats)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lada.bench.stats import (
    filter_lift,
    paired_delta,
    realised_rewards,
    seed_question_bootstrap,
    verdict,
)


def test_verdict_reads_the_interval() -> None:
    assert verdict(0.01, 0.2) == "win"
    assert verdict(-0.2, -0.01) == "loss"
    assert verdict(-0.01, 0.2) == "tie" and verdict(0.0, 0.1) == "tie"


def test_bootstrap_of_identical_methods_is_a_tie_at_zero() -> None:
    est = seed_question_bootstrap([[(1.0, np.zeros(50))] for _ in range(3)])
    assert (est.mean, est.lo, est.hi, est.verdict) == (0.0, 0.0, 0.0, "tie")


def test_bootstrap_point_is_the_mean_over_seeds_of_client_means() -> None:
    s0 = [(0.5, np.array([1.0, 0.0])), (0.5, np.array([1.0, 1.0, 1.0, 1.0]))]  # 0.75
    s1 = [(0.5, np.array([0.0])), (0.5, np.array([-1.0, 0.0]))]  # -0.25
    est = seed_question_bootstrap([s0, s1], n_boot=500)
    assert est.mean == pytest.approx(0.25)
    assert est.lo <= est.mean <= est.hi and est.n_seeds == 2


def test_bootstrap_interval_covers_the_truth_and_carries_the_seed_spread() -> None:
    """Data with a seed-level effect (each seed's Δ = 0.05 + N(0, 0.04)) and per-question noise:
    the two-level interval covers the true 0.05 in most draws, and is wider than what the
    question level alone would give."""
    rng = np.random.default_rng(1)
    covered, widths, q_widths = 0, [], []
    for _ in range(30):
        per_seed = []
        for _s in range(3):
            p = float(np.clip(0.05 + rng.normal(0, 0.04), -0.5, 0.5))
            d = rng.choice([-1.0, 0.0, 1.0], size=200, p=[0.2, 0.6 - p, 0.2 + p])
            per_seed.append([(1.0, d)])
        est = seed_question_bootstrap(per_seed, n_boot=400, rng_seed=2)
        covered += est.lo <= 0.05 <= est.hi
        widths.append(est.hi - est.lo)
        pooled = seed_question_bootstrap([[(1.0, np.concatenate([g[0][1] for g in per_seed]))]])
        q_widths.append(pooled.hi - pooled.lo)
    assert covered >= 24  # >= 80 % of 30 (nominal 95 %; 3 seeds make it approximate)
    assert np.mean(widths) > np.mean(q_widths)


def test_bootstrap_refuses_empty_groups() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        seed_question_bootstrap([[(1.0, np.array([]))]])
    with pytest.raises(ValueError, match="at least one seed"):
        seed_question_bootstrap([])


def _run(root: Path, name: str, bits: dict[str, dict[str, str]], last: int = 5) -> Path:
    d = root / name
    (d / "questions").mkdir(parents=True)
    sha = {k: f"{k * 40}"[:40] for k in bits["slm"]}
    for t in range(1, last + 1):
        (d / "questions" / f"round_{t:03d}.json").write_text(json.dumps({**bits, "ids_sha1": sha}))
    (d / "state.json").write_text(json.dumps({"last_complete_round": last}))
    return d


def test_paired_delta_pairs_questions_by_seed_and_client(tmp_path: Path) -> None:
    a = [
        _run(tmp_path, "a0", {"slm": {"0": "1100", "1": "11"}, "llm": {"0": "0000", "1": "00"}}),
        _run(tmp_path, "a1", {"slm": {"0": "1111", "1": "10"}, "llm": {"0": "0000", "1": "00"}}),
    ]
    b = [
        _run(tmp_path, "b0", {"slm": {"0": "0100", "1": "01"}, "llm": {"0": "0000", "1": "00"}}),
        _run(tmp_path, "b1", {"slm": {"0": "1111", "1": "00"}, "llm": {"0": "0000", "1": "00"}}),
    ]
    slm = paired_delta(a, b, "slm")
    # seed 0: client 0 +1/4, client 1 +1/2 -> 0.375; seed 1: 0 and +1/2 -> 0.25
    assert slm is not None and slm.mean == pytest.approx((0.375 + 0.25) / 2)
    assert slm.n_seeds == 2
    llm = paired_delta(a, b, "llm")
    assert llm is not None and (llm.mean, llm.verdict) == (0.0, "tie")


def test_paired_delta_compares_partial_runs_at_their_last_common_round(tmp_path: Path) -> None:
    bits = {"slm": {"0": "10"}, "llm": {"0": "10"}}
    a = _run(tmp_path, "a", bits)
    b_short = _run(tmp_path, "b", bits, last=3)  # not as far as a
    est = paired_delta([a], [b_short], "slm")
    assert est is not None and est.rounds == (3,) and est.mean == 0.0
    b_new = _run(tmp_path, "n", bits, last=0)  # no trained round yet
    assert paired_delta([a], [b_new], "slm") is None
    c = _run(tmp_path, "c", bits)
    (c / "questions" / "round_005.json").write_text(json.dumps({**bits, "ids_sha1": {"0": "x"}}))
    with pytest.raises(ValueError, match="different test questions"):
        paired_delta([a], [c], "slm")


def _learning_run(root: Path, name: str, drops: list[list[float]]) -> Path:
    """A run whose learner (client 0, "S") had picks with these loss drops, round by round."""
    d = root / name
    (d / "learning").mkdir(parents=True)
    (d / "config.yaml").write_text("filter:\n  alpha: 0.5\n  sample_signal: loss_drop\n")
    for t, dr in enumerate(drops, 1):
        before = [2.0] * len(dr)
        after = [2.0 - x for x in dr]
        learner = {"ids": [f"p{i}" for i in range(len(dr))], "loss_before": before}
        learner.update(loss_after=after, margin=[0.0] * len(dr))
        (d / "learning" / f"round_{t:03d}.json").write_text(json.dumps({"0": {"S": learner}}))
    return d


def test_realised_rewards_follow_the_spec_reward_chained_over_rounds(tmp_path: Path) -> None:
    from lada.filter.rewards import RewardTracker

    run = _learning_run(tmp_path, "r", [[0.5, 0.1], [0.2]])
    got = realised_rewards(run)[("0", "S")]
    tr = RewardTracker(0.5, "loss_drop")
    np.testing.assert_allclose(got[1], tr.step([1.5, 1.9], [2.0, 2.0]))
    np.testing.assert_allclose(got[2], tr.step([1.8], [2.0]))  # B chained from round 1


def test_filter_lift_is_positive_when_the_picks_learn_more(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lada, rand = [], []
    for s in range(3):
        lada.append(_learning_run(tmp_path, f"l{s}", [list(rng.uniform(0.3, 0.6, 40))] * 2))
        rand.append(_learning_run(tmp_path, f"r{s}", [list(rng.uniform(0.0, 0.3, 40))] * 2))
    lift = filter_lift(lada, rand)[("0", "S")]
    assert set(lift) == {1, 2, "all"}
    assert all(e.verdict == "win" and e.n_seeds == 3 for e in lift.values())
    same = filter_lift(rand, rand)[("0", "S")]["all"]
    assert same.mean == 0.0 and same.verdict == "tie"


def test_core_suite_is_the_issue_12_plan_with_fair_rehearsal() -> None:
    from lada.bench.suite import core_suite

    runs, _ = core_suite()
    assert len(runs) == 3 * (2 * 3 + 2)
    cells = {(r.host, r.method) for r in runs}
    assert cells == {(h, m) for h in ("sft", "fedmkt") for m in ("alone", "random", "lada")} | {
        ("sft", "cd_mean"),
        ("fedmkt", "alone_s5"),
    }
    assert {r.scenario for r in runs} == {"default"} and {r.seed for r in runs} == {0, 1, 2}
    # the embedded default's models: no model is pinned
    assert not any(o.startswith(("server.model", "clients=")) for r in runs for o in r.overrides)
    for r in runs:
        # 5 rounds, full test sets, no private rehearsal on either side
        assert {"rounds=5", "eval.limit=null", "distill.slm_replay=0"} <= set(r.overrides)
    (cd,) = [r for r in runs if r.method == "cd_mean" and r.seed == 0]
    assert "distill.cd_norm=mean" in cd.overrides
    (s5,) = [r for r in runs if r.method == "alone_s5" and r.seed == 0]
    assert {"plugin=none", "distill.llm_optim.lr=0.001", "distill.llm_optim.epochs=15"} <= set(
        s5.overrides
    )


def test_rehearsal_suite_gives_both_sides_the_same_private_rehearsal() -> None:
    from lada.bench.suite import rehearsal_suite
    from lada.config import load_config
    from lada.hosts import host_class
    from lada.runner.roles import run_plugin

    runs, _ = rehearsal_suite()
    assert {(r.host, r.method, r.seed) for r in runs} == {
        ("sft", m, s) for m in ("alone", "random", "lada", "random_labelled") for s in (0, 1, 2)
    }
    for r in runs:
        assert {"rounds=5", "eval.limit=null", "distill.slm_replay=200"} <= set(r.overrides)
        assert "distill.slm_replay=0" not in r.overrides
        cfg = load_config(None, list(r.overrides))
        assert cfg.distill.slm_replay == 200  # LaDa's and random's distillation step rehearse
        after_local = run_plugin(cfg).rehearses_after_local(cfg.distill, host_class("sft")())
        assert after_local is (r.method == "alone")  # ... and the host alone after local training


def _spec_run(runs_dir: Path, spec, slm: str, llm: str, drops: list[float]) -> None:
    d = runs_dir / spec.name
    _run(runs_dir, spec.name, {"slm": {"0": slm}, "llm": {"0": llm}}, last=1)
    (d / "learning").mkdir()
    (d / "config.yaml").write_text(
        "rounds: 1\nserver: {model: llm-s}\nclients: [{model: slm-s}]\nfilter: {alpha: 0.5}\n"
    )
    learner = {"ids": [f"p{i}" for i in range(len(drops))], "loss_before": [2.0] * len(drops)}
    learner.update(loss_after=[2.0 - x for x in drops], margin=[0.0] * len(drops))
    (d / "learning" / "round_001.json").write_text(json.dumps({"0": {"S": learner}}))


def test_paired_and_lift_tables_read_the_runs(tmp_path: Path) -> None:
    from lada.bench.compare import lift_table, paired_table
    from lada.bench.suite import core_suite

    specs = [s for s in core_suite(seeds=2)[0] if s.host == "sft"]
    for s in specs:
        good = s.method in ("lada", "cd_mean")
        _spec_run(
            tmp_path,
            s,
            slm="1" * 30 + "0" * 10 if good else "1" * 10 + "0" * 30,
            llm="10" * 20,
            drops=[0.5] * 20 if good else [0.1] * 20,
        )
    table = paired_table(specs, tmp_path)
    rows = {line.split(" | ")[2]: line for line in table.splitlines()[2:]}
    assert set(rows) == {
        "LaDa − host alone",
        "LaDa − random allocation",
        "per-token L_CD − LaDa (per-path L_CD)",
    }
    cells = rows["LaDa − host alone"].split(" | ")
    assert cells[3].startswith("+50.0 [") and cells[4] == "**win**"
    assert cells[5:] == ["+0.0 [+0.0, +0.0]", "tie", "2", "1 |"]  # the LLM's bits are equal
    lift = lift_table(specs, tmp_path)
    assert "SLM 0 (slm-s) ← LLM" in lift and "**win**" in lift and "round 1" in lift


def test_realised_rewards_count_only_trained_picks_when_saved(tmp_path: Path) -> None:
    from lada.filter.rewards import RewardTracker

    run = _learning_run(tmp_path, "r", [[0.5, 0.0, 0.1]])
    f = run / "learning" / "round_001.json"
    rec = json.loads(f.read_text())
    rec["0"]["S"]["trained"] = [True, False, True]
    f.write_text(json.dumps(rec))
    got = realised_rewards(run)[("0", "S")][1]
    np.testing.assert_allclose(got, RewardTracker(0.5, "loss_drop").step([1.5, 1.9], [2.0, 2.0]))


def test_paired_delta_by_kind_of_question(tmp_path: Path) -> None:
    """Questions 0-1 "private", 2-3 "general": LaDa gains only on the private ones."""
    from lada.bench.compare import kind_table
    from lada.bench.suite import core_suite
    from lada.eval.accuracy import ids_fingerprint

    ids = [f"c0-test-{i}" for i in range(4)]
    kinds = ["private", "private", "general", "general"]
    sha = ids_fingerprint(ids)
    specs = [s for s in core_suite(seeds=1)[0] if s.host == "sft" and s.method != "cd_mean"]
    for s in specs:
        d = tmp_path / s.name
        (d / "questions").mkdir(parents=True)
        bits = "1100" if s.method == "lada" else "0000"
        q = {"slm": {"0": bits}, "llm": {"0": "0000"}, "ids_sha1": {"0": sha}}
        (d / "questions" / "round_001.json").write_text(json.dumps(q))
        (d / "state.json").write_text(json.dumps({"last_complete_round": 1}))
        (d / "config.yaml").write_text("rounds: 1\n")
        test = d / "data" / "clients" / "client_0" / "test.jsonl"
        test.parent.mkdir(parents=True)
        test.write_text(
            "".join(
                json.dumps({"id": i, "meta": {"kind": k}}) + "\n"
                for i, k in zip(ids, kinds, strict=True)
            )
        )
    runs = [tmp_path / s.name for s in specs]
    lada, alone = runs[[s.method for s in specs].index("lada")], runs[0]
    assert paired_delta([lada], [alone], "slm", "private").mean == 1.0  # type: ignore[union-attr]
    assert paired_delta([lada], [alone], "slm", "general").mean == 0.0  # type: ignore[union-attr]
    table = kind_table(specs, tmp_path)
    assert "| LaDa − host alone | private | +100.0" in table
    assert "| LaDa − random allocation | general | +0.0" in table
    (lada / "data" / "clients" / "client_0" / "test.jsonl").write_text("")
    with pytest.raises(ValueError, match="fingerprint"):
        paired_delta([lada], [alone], "slm", "private")


def test_bench_tables_only_runs_nothing(tmp_path: Path) -> None:
    from lada.bench.run import bench

    summary = bench(tmp_path / "b", suite="core", tables_only=True, log=lambda *a: None)
    assert summary["rows"] == 0 and summary["failed"] == []
    assert not list((tmp_path / "b").glob("runs/*"))  # nothing was started
    assert (tmp_path / "b" / "results.md").exists()
