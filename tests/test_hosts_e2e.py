"""Each host runs 1 round alone and with LaDa on the tiny config; baselines and ablations end
to end; `lada bench --quick` writes its tables and plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lada.config import load_config
from lada.runner.run import run

FAST = ["rounds=1", "eval.initial=false", "local.optim.max_steps=3"]
HOMO = "clients=[{model: slm-s}, {model: slm-s}]"


def _run(tmp_path: Path, overrides: list[str], extra: list[str]) -> list[dict]:
    return run(load_config(None, overrides + FAST + extra), tmp_path / "r")


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        ["host=fedcot", "plugin=none"],
        ["host=fedcot", "plugin=lada"],
        ["host=fedcollm", "plugin=none", HOMO],
        ["host=fedcollm", "plugin=lada", HOMO],
        ["host=sft", "plugin=none"],
        ["host=fedmkt", "plugin=none"],
        ["host=fedmkt", "plugin=lada"],
    ],
    ids=[
        "fedcot-alone",
        "fedcot-lada",
        "fedcollm-alone",
        "fedcollm-lada",
        "sft-alone",
        "fedmkt-alone",
        "fedmkt-lada",
    ],
)
def test_each_host_runs_alone_and_with_lada(
    tmp_path: Path, tiny_overrides: list[str], extra: list[str]
) -> None:
    recs = _run(tmp_path, tiny_overrides, extra)
    r1 = recs[-1]
    assert r1["round"] == 1 and r1["missed"] == {}
    tasks = set(r1["bytes"]["by_task"])
    lada = "plugin=lada" in extra
    if "host=fedcollm" in extra:
        assert {"get_weights", "set_weights"} <= tasks
    if "host=fedmkt" in extra:
        assert {"logits", "distill_logits"} <= tasks and "distill" not in tasks
        assert ("generate" in tasks) == lada  # FedMKT alone exchanges no paths
    if "host=fedcot" in extra:
        assert all(v.get("L", 0) == 0 for v in r1["selected"].values())
        assert "generate" not in tasks  # one-way host: the SLMs write no paths
        assert all("slm_loss_after" in v for v in r1["distill"].values())
    if "host=sft" in extra:
        assert r1["selected"] == {} and "distill" not in tasks  # the plain host alone
    else:
        modes = {m for v in r1["filter_mode"].values() for m in v.values()}
        assert modes <= ({"cold_start", "unused"} if lada else {"all", "unused"})
        if not lada:
            assert all(v.get("slm_pairs", 0) == 0 for v in r1["distill"].values())  # λ = 0


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "perplexity", "ifd", "min_ce", "all"])
def test_each_allocation_baseline_runs(
    tmp_path: Path, tiny_overrides: list[str], strategy: str
) -> None:
    recs = _run(tmp_path, tiny_overrides, [f"allocation={strategy}", "filter.budget=4"])
    r1 = recs[-1]
    assert r1["missed"] == {}
    for k, sel in r1["selected"].items():
        assert r1["filter_mode"][k] == {"S": strategy, "L": strategy}
        for d in ("S", "L"):
            if strategy == "all":
                assert sel[d] == 30
            elif strategy == "min_ce":
                assert sel[d] <= 4
            else:
                assert sel[d] == 4
    if strategy in ("perplexity", "ifd", "min_ce"):
        assert "score" in r1["bytes"]["by_task"]
    assert r1["mean_reward"] == {}  # no filter to reward


@pytest.mark.slow
@pytest.mark.parametrize("ablation", ["distill.lambda_cd=0", "filter.use_explore=false"])
def test_ablations_run_end_to_end(tmp_path: Path, tiny_overrides: list[str], ablation: str) -> None:
    cfg = load_config(
        None, tiny_overrides + ["eval.initial=false", "local.optim.max_steps=3", ablation]
    )
    recs = run(cfg, tmp_path / "r")
    assert [r["round"] for r in recs] == [1, 2]
    assert recs[-1]["filter_mode"]["0"]["S"] == "bandit"
    if "lambda_cd" in ablation:
        assert all(v["slm_pairs"] == 0 for v in recs[-1]["distill"].values())


@pytest.mark.slow
def test_bench_quick_writes_tables_and_plots(tmp_path: Path) -> None:
    from lada.cli import main

    out = tmp_path / "bench"
    assert main(["bench", "--suite", "paper", "--quick", "--out", str(out), "--jobs", "2"]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["method"] for r in rows} >= {"alone", "lada", "random", "no_cd"}
    assert {r["host"] for r in rows} == {"sft", "fedcot", "fedcollm", "fedmkt"}
    assert all(float(r["mb_per_round"]) > 0 for r in rows)
    md = (out / "results.md").read_text()
    assert "## Main table" in md and "## Ablation" in md
    assert list((out / "plots").glob("accuracy_*.png"))
    assert list((out / "plots").glob("learnability_*.png"))
    # re-running skips finished runs
    summary = json.loads((out / "bench_summary.json").read_text())
    assert summary["failed"] == []
    assert main(["bench", "--suite", "paper", "--quick", "--out", str(out)]) == 0
