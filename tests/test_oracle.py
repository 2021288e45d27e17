"""allocation=oracle: true answers from the world, the picks equal the definition, same budget,
the mask respected; the oracle diagnostic leaves a run unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lada.data.sample import Sample
from lada.data.split import unlabelled
from lada.data.synthetic import SyntheticConfig, generate, make_world
from lada.federation import allocation as A
from lada.federation import oracle as O
from lada.federation.protocol import PathsRes, Task


def test_true_answers_of_unlabelled_questions_come_from_the_world() -> None:
    cfg = SyntheticConfig()
    world = make_world(cfg)
    samples = generate(world, 12, seed=5, knowledge="private", steps=(1, 3))
    hidden = [unlabelled(s) for s in samples]
    assert all(h.answer == "" and "total" not in h.meta for h in hidden)
    assert O.true_answers(hidden, cfg) == [s.answer for s in samples]
    assert O.true_answers(hidden) == [None] * 12  # no world: unknown, never "right"
    mc = generate(world, 6, seed=5, knowledge="private", answer_format="mc")
    assert O.true_answers([unlabelled(s) for s in mc], cfg) == [s.answer for s in mc]


def _by_definition(t_ok, l_ok, steps, count, allowed) -> set[int]:
    """The definition written out: tier, then the learner's accuracy at that number of steps."""
    cap = {s: np.mean([l_ok[i] for i in range(len(steps)) if steps[i] == s]) for s in set(steps)}
    score = {
        i: 2 * (t_ok[i] and not l_ok[i]) + (t_ok[i] and l_ok[i]) + cap[steps[i]]
        for i in range(len(steps))
        if allowed[i]
    }
    ranked = sorted(score.values(), reverse=True)
    cut = ranked[count - 1]
    assert cut not in ranked[count:], "the example must have no tie at the cut"
    return {i for i, v in score.items() if v >= cut}


def test_pick_oracle_equals_its_definition_within_the_mask() -> None:
    rng = np.random.default_rng(0)
    n = 40
    t_ok = rng.random(n) < 0.6
    l_ok = rng.random(n) < 0.4
    steps = rng.integers(1, 5, n)
    mask = rng.random(n) < 0.7
    for m in (None, mask):
        allowed = np.ones(n, bool) if m is None else m
        # a count whose cut falls between two distinct scores
        scores = sorted(O.oracle_scores(t_ok, l_ok, steps)[allowed], reverse=True)
        count = next(c for c in range(5, 15) if scores[c - 1] != scores[c])
        got = O.pick_oracle(t_ok, l_ok, steps, count, seed=1, mask=m)
        assert len(got) == count and set(got) <= set(np.flatnonzero(allowed))
        assert set(got.tolist()) == _by_definition(t_ok, l_ok, steps, count, allowed)
    # right path on what the learner gets wrong beats everything else
    t = np.array([1, 1, 0, 1], bool)
    lr = np.array([0, 1, 0, 1], bool)
    assert O.pick_oracle(t, lr, np.array([1, 1, 1, 1]), 1, seed=0).tolist() == [0]
    # more than the mask allows: every allowed candidate, never another
    assert O.pick_oracle(t, lr, np.ones(4), 3, 0, np.array([0, 1, 0, 0], bool)).tolist() == [1]
    with pytest.raises(ValueError, match="mask"):
        O.pick_oracle(t, lr, np.ones(4), 1, 0, np.ones(3, bool))


def test_selection_precision() -> None:
    assert O.selection_precision(["a", "b", "c", "d"], ["b", "d", "x"]) == 0.5
    assert O.selection_precision(["a"], []) == 0.0
    assert np.isnan(O.selection_precision([], ["a"]))


def _path(answer: str) -> str:
    return f"work\nAnswer: {answer}"


class _Transport:
    """GENERATE: client k's path is right on even (k = 0) or odd (k = 1) indices, else wrong."""

    def __init__(self, public: list[Sample]) -> None:
        self.public = public

    def broadcast(self, round_idx, task, instructions):
        assert task == Task.GENERATE
        return {
            k: PathsRes(
                list(ins.ids),
                [_path(s.meta["truth"] if i % 2 == k else "-1") for i, s in enumerate(self.public)],
            )
            for k, ins in instructions.items()
        }


def test_oracle_allocation_picks_by_definition_with_the_same_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = 24
    public = [
        Sample(
            f"p{i}",
            "market",
            f"q{i}?",
            str(i) if i % 3 else "",  # every third unlabelled: truth unknown without a world
            "number",
            meta={"num_steps": 1 + i % 4, "truth": str(i)},
        )
        for i in range(n)
    ]
    server = SimpleNamespace(
        public=public,
        public_ids=[s.id for s in public],
        by_id={s.id: s for s in public},
        settings=SimpleNamespace(
            seed=0, world=None, distill=SimpleNamespace(llm_optim=SimpleNamespace(max_length=64))
        ),
        teaches=lambda pid: bool(server.by_id[pid].answer),
    )
    # the LLM is right where i % 4 < 2
    monkeypatch.setattr(
        O,
        "llm_own_paths",
        lambda srv, r, ids: [_path(str(i) if i % 4 < 2 else "-1") for i in range(len(ids))],
    )
    count = 5
    out = A.baseline_allocate(
        1, "oracle", server, _Transport(public), [0, 1], ("S", "L"), count, lambda t, r: r
    )
    truth_known = np.array([bool(s.answer) for s in public])
    llm_ok = np.array([i % 4 < 2 for i in range(n)]) & truth_known
    steps = np.array([s.num_steps for s in public])
    for k in (0, 1):
        slm_ok = np.array([i % 2 == k for i in range(n)]) & truth_known
        for d, (t_ok, l_ok) in {"S": (llm_ok, slm_ok), "L": (slm_ok, llm_ok)}.items():
            got = out.alloc[k].ids[d]
            assert len(got) == count and out.alloc[k].mode[d] == "oracle"
            scores = O.oracle_scores(t_ok, l_ok, steps)
            top = sorted(scores, reverse=True)
            picked = {int(p[1:]) for p in got}
            # every pick scores at least as high as every candidate left out
            assert min(scores[list(picked)]) >= max(np.delete(scores, list(picked)))
            assert top[0] == max(scores[list(picked)])
    # the LLM's paths are reused as the round's teacher paths: none where it does not teach
    assert all(out.llm_paths[s.id] == "" for s in public if not s.answer)
    assert set(out.slm_paths) == {0, 1}


FAST = ["rounds=1", "eval.initial=false", "local.optim.max_steps=2", "seed=3"]
BUDGET = 6  # TINY's filter.budget


def test_oracle_diagnostic_records_the_oracle_picks_without_changing_a_lada_run(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    from lada.config import load_config
    from lada.runner.run import run

    base = [*tiny_overrides, *FAST, "allocation=lada", f"filter.budget={BUDGET}"]
    run(load_config(None, base), tmp_path / "plain")
    run(load_config(None, [*base, "oracle_diagnostic=true"]), tmp_path / "diag")
    for sub in ("selections", "questions", "learning"):
        a = (tmp_path / "plain" / sub / "round_001.json").read_text()
        b = (tmp_path / "diag" / sub / "round_001.json").read_text()
        assert a == b, sub
    assert not (tmp_path / "plain" / "oracle").exists()
    sel = json.loads((tmp_path / "diag" / "selections" / "round_001.json").read_text())
    orc = json.loads((tmp_path / "diag" / "oracle" / "round_001.json").read_text())
    assert set(orc) == set(sel)
    n_public = len((tmp_path / "diag" / "data" / "public.jsonl").read_text().splitlines())
    lines = (tmp_path / "diag" / "metrics.jsonl").read_text().splitlines()
    masked = json.loads(lines[-1])["masked"]
    for k in sel:
        for d in sel[k]:
            # the oracle ranks the same teachable candidates, with LaDa's cap as its count
            n_candidates = n_public - masked[k][d]
            assert len(orc[k][d]) == min(BUDGET, n_candidates) >= len(sel[k][d])


def test_oracle_allocation_runs_on_tiny_models_with_the_budget_over_teachable_candidates(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    from lada.config import load_config
    from lada.runner.run import run

    recs = run(load_config(None, [*tiny_overrides, *FAST, "allocation=oracle"]), tmp_path / "r")
    assert recs[-1]["missed"] == {}
    sel = json.loads((tmp_path / "r" / "selections" / "round_001.json").read_text())
    n_public = len((tmp_path / "r" / "data" / "public.jsonl").read_text().splitlines())
    masked = recs[-1]["masked"]
    assert sel and all(
        len(ids) == min(BUDGET, n_public - masked[k][d])
        for k, per in sel.items()
        for d, ids in per.items()
    )
    assert all(m == "oracle" for per in recs[-1]["filter_mode"].values() for m in per.values())
