"""Allocation baselines, FedCoT's loss weighting and FedAvg: formulas and small setups."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lada.config import load_config
from lada.data.sample import Sample
from lada.federation import allocation as A
from lada.federation.protocol import (
    PathsRes,
    ScoreIns,
    ScoreRes,
    SetWeightsIns,
    Task,
    WeightsRes,
    decode,
    encode,
)
from lada.hosts import check_host_config, host_directions
from lada.hosts.fedavg import FlatState, HeterogeneousModelsError, fedavg, flatten, unflatten
from lada.hosts.fedcot import split_rationale


def test_perplexity_and_ifd_match_hand_values() -> None:
    cond = np.array([math.log(2.0), math.log(4.0)])
    uncond = np.array([math.log(4.0), math.log(2.0)])
    assert np.allclose(A.perplexity(cond), [2.0, 4.0])
    assert np.allclose(A.ifd(cond, uncond), [0.5, 2.0])  # PPL(y|x)/PPL(y): 2/4, 4/2


def test_pickers_return_the_right_indices_and_counts() -> None:
    assert A.pick_perplexity(np.log([1.5, 3.0, 2.0, 9.0]), 2).tolist() == [1, 3]
    # IFD [0.5, 2, 0.9, 0.1]: IFD < 1 first, highest first (0.9, 0.5), then the rest
    cond = np.log([0.5, 2.0, 0.9, 0.1])
    zero = np.zeros(4)
    assert A.pick_ifd(cond, zero, 2).tolist() == [0, 2]
    assert A.pick_ifd(cond, zero, 4).tolist() == [0, 1, 2, 3]
    # min-CE: transfer where the teacher's CE is lower; largest gap first, capped
    learner, teacher = np.array([3.0, 1.0, 2.0]), np.array([1.0, 2.0, 1.5])
    assert A.pick_min_ce(learner, teacher, 5).tolist() == [0, 2]
    assert A.pick_min_ce(learner, teacher, 1).tolist() == [0]
    r = A.pick_random(30, 6, seed=3)
    assert len(set(r.tolist())) == 6 and r.min() >= 0 and r.max() < 30
    assert r.tolist() == A.pick_random(30, 6, seed=3).tolist()


def test_allocation_count_rules() -> None:
    assert A.allocation_count(30, None, 6, 0.1) == 6  # the filter's budget
    assert A.allocation_count(30, 4, 6, 0.1) == 4  # a configured count wins
    assert A.allocation_count(30, None, None, 0.1) == 3  # else 10 % of P
    assert A.allocation_count(5, 9, None, 0.1) == 5  # never more than P


def _public(n: int) -> list[Sample]:
    return [
        Sample(
            id=f"p{i}",
            domain="market",
            question=f"q{i}?",
            answer=str(i),
            answer_type="number",
            steps=(f"s{i}",),
        )
        for i in range(n)
    ]


class _FakeTransport:
    """Replies to SCORE and GENERATE with deterministic fake numbers, counts messages."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def broadcast(self, round_idx, task, instructions):
        self.tasks.append(task)
        out = {}
        for k, ins in instructions.items():
            n = len(ins.ids)
            if task == Task.SCORE:
                assert isinstance(ins, ScoreIns) and len(ins.paths) == n
                rng = np.random.default_rng(k)
                out[k] = ScoreRes(list(ins.ids), rng.random(n) + 1, rng.random(n) + 1)
            else:
                out[k] = PathsRes(list(ins.ids), [f"path {i}" for i in ins.ids])
        return out


@pytest.mark.parametrize(
    "strategy", ["all", "random", "random_labelled", "perplexity", "ifd", "min_ce"]
)
@pytest.mark.parametrize("directions", [("S", "L"), ("S",)])
def test_each_baseline_returns_valid_ids_and_counts(
    strategy: str, directions: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    public = _public(20)
    server = SimpleNamespace(
        public=public,
        public_ids=[s.id for s in public],
        settings=SimpleNamespace(
            seed=0, distill=SimpleNamespace(llm_optim=SimpleNamespace(max_length=64))
        ),
        model=None,
        tokenizer=None,
        generate=lambda r, ids: {i: f"llm {i}" for i in ids},
    )
    rng = np.random.default_rng(9)
    monkeypatch.setattr(
        A,
        "score_nll",
        lambda m, t, prompts, paths, L: (rng.random(len(paths)) + 1, rng.random(len(paths)) + 1),
    )
    out = A.baseline_allocate(
        1, strategy, server, _FakeTransport(), [0, 1], directions, 5, lambda t, r: r
    )
    ids = set(server.public_ids)
    assert set(out.alloc) == {0, 1}
    for a in out.alloc.values():
        assert set(a.ids) == set(directions)
        for d in directions:
            picked = a.ids[d]
            assert set(picked) <= ids and len(set(picked)) == len(picked)
            if strategy == "all":
                assert len(picked) == 20
            elif strategy == "min_ce":
                assert len(picked) <= 5
            else:
                assert len(picked) == 5
            assert a.mode[d] == strategy
    with pytest.raises(ValueError):
        A.baseline_allocate(1, "lada", server, _FakeTransport(), [0], directions, 5, lambda t, r: r)


def test_split_rationale() -> None:
    assert split_rationale("a 1*2=2\nb 2+3=5\nAnswer: 5") == ("a 1*2=2\nb 2+3=5", "Answer: 5")
    assert split_rationale("no answer") == ("no answer", "")


def test_fedavg_of_two_state_dicts() -> None:
    a = {"w": torch.zeros(2, 2), "b": torch.ones(3)}
    b = {"w": torch.full((2, 2), 4.0), "b": torch.full((3,), 5.0)}
    avg = fedavg([flatten(a), flatten(b)], weights=[1, 3])  # (1·a + 3·b) / 4
    back = unflatten(avg.names, avg.shapes, avg.flat)
    assert torch.allclose(back["w"], torch.full((2, 2), 3.0))
    assert torch.allclose(back["b"], torch.full((3,), 4.0))
    equal = unflatten(*(lambda s: (s.names, s.shapes, s.flat))(fedavg([flatten(a), flatten(b)])))
    assert torch.allclose(equal["w"], torch.full((2, 2), 2.0))
    other = flatten({"w": torch.zeros(3, 2), "b": torch.ones(3)})
    with pytest.raises(HeterogeneousModelsError, match="homogeneous"):
        fedavg([flatten(a), other])
    assert isinstance(avg, FlatState)


def test_new_payloads_roundtrip() -> None:
    flat = np.arange(5, dtype=np.float32)
    for p in (
        ScoreRes(["a", "b"], np.array([1.0, 2.0], np.float32), np.array([3.0, 4.0], np.float32)),
        WeightsRes(num_samples=3, names=["w"], shapes="[[5]]", flat=flat),
        SetWeightsIns(round=1, names=["w"], shapes="[[5]]", flat=flat),
    ):
        back = type(p).from_record(decode(encode(p.to_record())))
        for name, v in vars(p).items():
            got = getattr(back, name)
            assert np.array_equal(got, v) if isinstance(v, np.ndarray) else got == v


def test_host_config_checks() -> None:
    assert host_directions("fedcot") == ("S",) and host_directions("sft") == ("S", "L")
    with pytest.raises(ValueError, match="homogeneous SLMs"):
        check_host_config(load_config(None, ["host=fedcollm"]))
    check_host_config(
        load_config(None, ["host=fedcollm", "clients=[{model: slm-s}, {model: slm-s}]"])
    )


def test_full_plan_every_host_alone_and_with_lada_baselines_on_the_plain_host() -> None:
    from lada.bench.suite import BASELINES, paper_suite

    runs, skipped = paper_suite(seeds=1)
    names = {r.name for r in runs}
    for host, scen in [("sft", "hetero"), ("fedcot", "small_llm"), ("fedcollm", "homo")]:
        assert {f"{host}__alone__{scen}__s0", f"{host}__lada__{scen}__s0"} <= names
    assert {f"sft__{b}__hetero__s0" for b in BASELINES} <= names
    assert not any(r.method in BASELINES for r in runs if (r.host, r.scenario) != ("sft", "hetero"))
    assert "fedcollm__lada__hetero__s0" not in names  # FedAvg needs homogeneous SLMs
    assert len(runs) == 2 * (4 + 4 + 2 + 4) + len(BASELINES) + 2 + 4 and any(
        "--grid" in s for s in skipped
    )
    grid, _ = paper_suite(seeds=1, grid=True)
    # and LaDa keeping the logit hosts' own transfer on all of P (fedcollm 2 + fedmkt 4 scenarios)
    assert len(grid) == 7 * (4 + 4 + 2 + 4) + (2 + 4) + 2 + 4
    keep = [s for s in grid if s.method == "lada_keep"]
    assert {s.host for s in keep} == {"fedcollm", "fedmkt"}
    assert all("host_transfer=all" in s.overrides for s in keep)
    assert len(paper_suite(seeds=3)[0]) == 3 * len(runs)


def test_bench_refuses_runs_made_with_other_settings(tmp_path) -> None:
    import yaml

    from lada.bench.execute import execute, stale_runs
    from lada.bench.suite import paper_suite
    from lada.config import to_dict

    spec = paper_suite(quick=True)[0][0]
    run_dir = tmp_path / "runs" / spec.name
    run_dir.mkdir(parents=True)
    cfg = to_dict(load_config(None, list(spec.overrides)))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert stale_runs([spec], tmp_path / "runs") == []
    # a field added to the code after the run was made: stale only when the plan moves it
    del cfg["keep_checkpoints"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert stale_runs([spec], tmp_path / "runs") == []
    moved = replace(spec, overrides=(*spec.overrides, "keep_checkpoints=last"))
    (stale,) = stale_runs([moved], tmp_path / "runs")
    assert "keep_checkpoints (None -> 'last')" in stale
    cfg["distill"]["lambda_cd"] = 0.25
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    (stale,) = stale_runs([spec], tmp_path / "runs")
    assert "distill.lambda_cd (0.25 -> 1.0)" in stale
    with pytest.raises(ValueError, match="other settings"):
        execute([spec], tmp_path)


def test_main_table_shows_the_gap_to_the_host_alone_and_one_scenario_of_bytes() -> None:
    from lada.bench.tables import main_table

    def row(method: str, scenario: str, seed: int, slm: float, llm: float, mb: float) -> dict:
        return dict(host="fedcollm", method=method, scenario=scenario, seed=seed,
                    slm_acc_mean=slm, llm_acc_mean=llm, mb_per_round=mb)  # fmt: skip

    rows = [
        row("alone", "homo", 0, 0.10, 0.20, 4.0),
        row("alone", "homo", 1, 0.20, 0.20, 4.0),
        row("lada", "homo", 0, 0.30, 0.10, 1.0),
        row("alone", "one2one", 0, 0.10, 0.10, 1.5),
    ]
    table = main_table(rows, ["fedcollm"], ["hetero", "homo", "one2one"])
    alone, lada, delta = table.splitlines()[2:]
    assert "| 15.0 ± 7.1 | 20.0 ± 0.0 |" in alone and alone.endswith("| 4.000 ± 0.000 (homo) |")
    assert delta == "| fedcollm | Δ LaDa − alone | – | – | +15.0 | -10.0 | – | – | |"
    assert "1.000 (homo)" in lada


def test_perplexity_and_ifd_never_pick_what_the_teacher_abstained_on() -> None:
    from lada.federation.allocation import _taught, pick_ifd, pick_perplexity

    nll = _taught(np.array([1.0, 5.0, 3.0, 9.0]), ["a", "b", "", ""])
    assert np.isnan(nll[2:]).all() and nll[:2].tolist() == [1.0, 5.0]
    assert pick_perplexity(nll, 3).tolist() == [0, 1]  # fewer than asked, none abstained
    assert pick_ifd(nll, np.full(4, 2.0), 3).tolist() == [0, 1]


def test_random_labelled_picks_labelled_questions_on_the_slm_side_only() -> None:
    public = _public(20)
    unlabelled = {f"p{i}" for i in range(0, 20, 2)}
    public = [
        Sample(id=s.id, domain=s.domain, question=s.question, answer="", answer_type="number")
        if s.id in unlabelled
        else s
        for s in public
    ]
    server = SimpleNamespace(
        public=public,
        public_ids=[s.id for s in public],
        settings=SimpleNamespace(
            seed=0, distill=SimpleNamespace(llm_optim=SimpleNamespace(max_length=64))
        ),
    )
    seen_l: set[str] = set()
    for r in range(1, 6):
        out = A.baseline_allocate(
            r, "random_labelled", server, _FakeTransport(), [0, 1], ("S", "L"), 6, None
        )
        for a in out.alloc.values():
            assert len(a.ids["S"]) == 6 and not set(a.ids["S"]) & unlabelled
            assert len(a.ids["L"]) == 6
            seen_l |= set(a.ids["L"])
    assert seen_l & unlabelled  # the LLM side draws from all of P
