"""LaDa as the spec describes it: the reward f1 learns keeps α and r_batch, unteachable samples
leave the candidates before the filter scores, L_CD runs on both channels (unlabelled public
questions included), and no reward comes from an empty teacher path."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from types import SimpleNamespace

import numpy as np
import pytest

from lada.config.schema import DistillConfig
from lada.data.sample import Sample
from lada.federation.server import LearnerLosses
from lada.filter.bandit import LearnabilityFilter
from lada.filter.config import FilterConfig
from lada.filter.rewarding import reward_picks

DIM = 6


def _filter(**kw) -> LearnabilityFilter:
    return LearnabilityFilter(DIM, FilterConfig(hidden=16, epochs=1, **kw))


def _pool(n: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def _round(filt: LearnabilityFilter, before: np.ndarray, after: np.ndarray, round_idx: int):
    """One round: select on a pool, then reward every pool sample as a trained pick with the
    given losses (the same samples every round, whatever the filter picked)."""
    X = _pool()
    filt.select(X, round_idx)
    idx = np.arange(X.shape[0])
    n = idx.size
    ids = [f"p{i}" for i in idx]
    losses = LearnerLosses(ids, before[:n], after[:n], np.zeros(n), np.ones(n, dtype=bool))
    reward_picks(filt, losses, {f"p{i}": i for i in range(X.shape[0])})
    return filt.hist_y[-n:].copy()


BEFORE = np.array([2.0, 2.5, 3.0, 3.5, 2.2, 2.8, 3.1, 2.4, 2.6, 2.9, 3.3, 2.1])
AFTER = BEFORE - np.array([0.1, 0.5, 0.9, 0.2, 0.4, 0.05, 0.7, 0.3, 0.6, 0.8, 0.15, 0.35])


def test_alpha_changes_what_f1_learns_when_every_pick_was_trained() -> None:
    y_low = _round(_filter(alpha=0.2), BEFORE, AFTER, 1)
    y_high = _round(_filter(alpha=0.8), BEFORE, AFTER, 1)
    assert y_low.shape == y_high.shape and y_low.size > 1
    assert not np.allclose(y_low, y_high)


def test_r_batch_changes_what_f1_learns_for_the_same_sample_signal() -> None:
    """Two rounds with the same g_i (same per-sample loss drops) but different B_t."""
    filt = _filter()
    y1 = _round(filt, BEFORE, AFTER, 1)
    r_batch_1 = filt.tracker.last_r_batch
    y2 = _round(filt, BEFORE + 1.0, AFTER + 1.0, 2)  # same drops, higher losses: B_t grew
    r_batch_2 = filt.tracker.last_r_batch
    assert r_batch_1 != pytest.approx(r_batch_2)
    n = min(y1.size, y2.size)
    assert n > 1 and not np.allclose(y1[:n], y2[:n])


def test_huge_losses_never_put_non_finite_rewards_into_the_history() -> None:
    filt = _filter()
    _round(filt, np.full(12, 900.0), np.full(12, 800.0), 1)
    _round(filt, np.full(12, np.inf), np.full(12, np.nan), 2)
    assert filt.hist_r.size > 0
    assert np.all(np.isfinite(filt.hist_r)) and np.all(np.isfinite(filt.hist_y))
    with pytest.raises(ValueError, match="finite"):
        filt.update_picks(np.array([0]), np.array([np.nan]))


def test_the_default_selection_is_the_spec_rule() -> None:
    c = FilterConfig()
    assert (c.select_rule, c.threshold, c.reward_target, c.min_select) == (
        "absolute",
        0.5,
        "raw",
        1,
    )


def test_unteachable_samples_leave_the_candidates_before_the_filter_scores() -> None:
    X = _pool(20)
    mask = np.zeros(20, dtype=bool)
    mask[[1, 4, 7, 8, 15]] = True
    filt = _filter(cold_start_fraction=0.5, cold_start_clusters=3)
    idx = filt.select(X, 1, candidates=mask)
    assert idx.size > 0 and set(idx.tolist()) <= {1, 4, 7, 8, 15}
    assert filt.last_masked == 15
    losses = LearnerLosses([f"p{i}" for i in idx], np.full(idx.size, 2.0),
                           np.full(idx.size, 1.5), np.zeros(idx.size), None)  # fmt: skip
    reward_picks(filt, losses, {f"p{i}": i for i in range(20)})
    idx2 = filt.select(X, 2, candidates=mask)  # the bandit too
    assert idx2.size > 0 and set(idx2.tolist()) <= {1, 4, 7, 8, 15}


def test_an_all_unteachable_round_is_masked_not_flattened() -> None:
    filt = _filter()
    idx = filt.select(_pool(), 1, candidates=np.zeros(12, dtype=bool))
    assert idx.size == 0 and filt.last_masked == 12 and filt.last_mode == "masked"
    out = reward_picks(filt, LearnerLosses([], np.zeros(0), np.zeros(0), np.zeros(0)), {})
    assert out["n"] == 0 and filt.hist_y.size == 0  # nothing learnt, no 0.5 targets


def test_all_abstained_picks_never_enter_the_history_as_neutral_targets() -> None:
    """Picks whose teacher abstained (empty paths) are never rewarded from their loss, and
    never become 0.5 targets."""
    filt = _filter(unteachable_reward=None)
    X = _pool()
    idx = filt.select(X, 1)
    n = idx.size
    losses = LearnerLosses([f"p{i}" for i in idx], np.full(n, 3.0), np.full(n, 2.0),
                           np.zeros(n), np.ones(n, dtype=bool), paths=[""] * n)  # fmt: skip
    out = reward_picks(filt, losses, {f"p{i}": i for i in range(12)})
    assert out["n"] == 0 and filt.hist_y.size == 0


# ---- L_CD on both channels ---------------------------------------------------------------


def _sample(i: int, answer: str) -> Sample:
    return Sample(
        id=f"p{i}",
        domain="market",
        question=f"Ava buys {i} fig. How many coins?",
        answer=answer,
        answer_type="number",
        steps=(f"fig {i}*2={2 * i}",) if answer else (),
    )


def test_role_pairs_are_kept_on_unlabelled_questions_under_skip() -> None:
    from lada.train.distill import _targets

    samples = [_sample(1, ""), _sample(2, ""), _sample(3, "6"), _sample(4, "8")]
    teacher = ["a 1\nAnswer: 7", "b 2\nAnswer: 9", "fig 3*2=6\nAnswer: 6", "fig 4*2=8\nAnswer: 8"]
    own = ["c\nAnswer: 1", "d\nAnswer: 2", "e\nAnswer: 5", "fig 4*2=8 ok\nAnswer: 8"]
    t = _targets(samples, teacher, own, DistillConfig(unverified="skip", preference="role"))
    # unlabelled: role decides; labelled: kept only where the label separates the two paths
    assert sorted(t.pairs.indices) == [0, 1, 2]
    assert t.learn.tolist() == [True, True, True, True]


@pytest.mark.parametrize("mode", ["contrast", "floor", "off"])
def test_llm_unlabelled_cd_sets_the_pairs_on_unlabelled_questions(mode: str) -> None:
    """distill.llm_unlabelled_cd: "off" drops only the unlabelled questions' pairs; "floor"
    keeps them (the margin is floored, lada.train.losses.contrastive_margin)."""
    from lada.train.distill import _targets

    samples = [_sample(1, ""), _sample(2, ""), _sample(3, "6")]
    teacher = ["a 1\nAnswer: 7", "b 2\nAnswer: 9", "fig 3*2=6\nAnswer: 6"]
    own = ["c\nAnswer: 1", "d\nAnswer: 2", "e\nAnswer: 5"]
    t = _targets(samples, teacher, own, DistillConfig(), mode)  # type: ignore[arg-type]
    assert sorted(t.pairs.indices) == ([2] if mode == "off" else [0, 1, 2])
    assert t.learn.tolist() == [True, True, True]  # SFT on every preferred path either way


def test_the_llm_writes_its_own_paths_for_unlabelled_llm_side_picks() -> None:
    """The LLM abstains as a teacher on unlabelled questions, yet it needs its own path there
    as L_CD's rejected side when it learns SLM k's path."""
    from lada.federation.host import Picks
    from lada.federation.paths import exchange_paths
    from lada.federation.protocol import PathsRes
    from lada.federation.report import RoundReport
    from lada.federation.server import Allocation

    samples = {"p1": _sample(1, ""), "p2": _sample(2, "4")}

    class Server:
        by_id = samples
        settings = SimpleNamespace(distill=DistillConfig())

        def teaches(self, pid: str) -> bool:
            return bool(samples[pid].answer)

        def generate(self, round_idx, ids):
            return {i: (f"llm {i}" if self.teaches(i) else "") for i in ids}

        def own_paths(self, round_idx, ids):
            return {i: f"llm own {i}" for i in ids}

    class Transport:
        def broadcast(self, round_idx, task, ins):
            return {k: PathsRes(list(v.ids), [f"slm {i}" for i in v.ids]) for k, v in ins.items()}

    from lada.federation.host import RoundContext

    rnd = RoundContext(1, Server(), Transport(), RoundReport(1), [0])  # type: ignore[arg-type]
    alloc = {0: Allocation(ids={"S": ["p2"], "L": ["p1", "p2"]})}
    paths = exchange_paths(rnd, Picks(alloc, ("S", "L"), rewards=True))
    assert paths.llm["p1"] == ""  # it does not teach p1
    assert paths.llm_own["p1"] == "llm own p1" and paths.llm_own["p2"] == "llm p2"


# ---- no reward from an empty path ----------------------------------------------------------


def test_a_logit_learner_step_never_counts_an_abstained_pick_as_trained() -> None:
    from lada.models import build_model, build_tokenizer
    from lada.train.distill import LogitHook, learn_from_paths
    from lada.train.loop import OptimConfig

    samples = [_sample(i, str(2 * i)) for i in range(1, 5)]
    tok = build_tokenizer([s.prompt() + s.target() for s in samples] * 5, vocab_size=120)
    model = build_model("slm-xs", tok, seed=0)
    hook = LogitHook(teachers=[None] * 4, lm=[True] * 4, lm_weight=1.0, kd_weight=0.0)
    teacher = [samples[0].target(), "", samples[2].target(), ""]
    own = ["Answer: 1"] * 4
    cfg = DistillConfig(unverified="keep")
    optim = OptimConfig(lr=1e-3, epochs=1, batch_size=4, warmup_steps=0, max_length=64)
    out = learn_from_paths(model, tok, samples, teacher, own, cfg, optim, logits=hook)
    assert out.trained.tolist() == [True, False, True, False]
    assert out.paired.tolist() == [True, False, True, False]


# ---- random_teachable: the same mask and budget as LaDa's filters, on tiny models ---------


def test_random_teachable_sees_the_same_mask_and_budget_as_lada(
    tmp_path, tiny_overrides: list[str]
) -> None:
    from lada.config import load_config
    from lada.engines.inprocess import InProcessEngine
    from lada.federation.guard import guarded
    from lada.federation.host import Host, RoundContext
    from lada.federation.plugin import ExchangeStep, LadaPlugin
    from lada.federation.report import RoundReport
    from lada.runner.run import build_client, build_server, prepare_run_dir
    from lada.runner.setup import load_run_data

    over = tiny_overrides + ["rounds=1", "distill.unverified=skip", "distill.llm_teaches=labelled"]
    cfg, _ = prepare_run_dir(tmp_path / "r", load_config(None, over), False)
    data = load_run_data(cfg, tmp_path / "r")
    clients = {k: build_client(cfg, data, k, tmp_path / "r" / f"c{k}") for k in range(3)}
    server = build_server(cfg, data)
    engine = InProcessEngine(clients)
    host = Host()
    budget = cfg.filter.budget
    labelled = np.array([bool(s.answer) for s in server.public])

    def one(allocation: str, counts_from: str | None = None):
        rnd = RoundContext(1, server, guarded(engine, server, host), RoundReport(1), [0, 1, 2])
        masks = LadaPlugin.teachable(rnd, host, ("S", "L")).masks
        plugin = LadaPlugin(allocation=allocation, counts_from=counts_from)
        picks = plugin.allocate(rnd, ExchangeStep(allocation, host, True), ("S", "L"))
        return rnd.report, masks, picks

    rep_lada, masks_lada, picks_lada = one("lada")
    rep_rand, masks_rand, picks_rand = one("random_teachable")
    assert rep_lada.masked == rep_rand.masked and set(rep_lada.masked) == {0, 1, 2}
    pos = {pid: i for i, pid in enumerate(server.public_ids)}
    for k in (0, 1, 2):
        for d in ("S", "L"):
            m = masks_lada[k][d]
            assert np.array_equal(m, masks_rand[k][d])
            assert rep_lada.masked[k][d] == int((~m).sum())
            if d == "S":  # the LLM teaches only labelled questions (and verified paths)
                assert not (m & ~labelled).any()
            for picks in (picks_lada, picks_rand):
                got = [pos[i] for i in picks.alloc[k].ids[d]]
                assert all(m[i] for i in got) and len(got) <= budget
            n_rand = len(picks_rand.alloc[k].ids[d])
            assert n_rand == min(budget, int(m.sum()))
    assert picks_rand.rewards is False and picks_lada.rewards is True
    # the teachers' paths written for the mask are those the exchange reuses
    assert picks_lada.llm_paths == picks_rand.llm_paths and picks_lada.llm_paths

    # count-matched (allocation_counts_from): as many as the followed run picked, per learner
    # and direction; a client the file lacks picks nothing; still random within the same mask
    followed = tmp_path / "followed"
    (followed / "selections").mkdir(parents=True)
    wanted = {0: {"S": 2, "L": 1}, 1: {"S": 0, "L": 3}}
    (followed / "selections" / "round_001.json").write_text(
        json.dumps(
            {
                str(k): {d: [f"x{i}" for i in range(n)] for d, n in per.items()}
                for k, per in wanted.items()
            }
        )
    )
    rep_m, masks_m, picks_m = one("random_teachable", str(followed))
    assert rep_m.masked == rep_rand.masked
    for k in (0, 1, 2):
        for d in ("S", "L"):
            m = masks_m[k][d]
            got = [pos[i] for i in picks_m.alloc[k].ids[d]]
            assert all(m[i] for i in got) and len(set(got)) == len(got)
            assert len(got) == min(wanted.get(k, {}).get(d, 0), int(m.sum()))
            assert rep_m.filter_mode[k][d] == "random_matched"
    assert picks_m.rewards is False


def test_matched_counts_reads_a_runs_selections_and_names_the_file_when_bad(tmp_path) -> None:
    from lada.federation.allocation import matched_counts

    sel = tmp_path / "selections"
    sel.mkdir()
    (sel / "round_002.json").write_text(
        json.dumps({"0": {"S": ["a", "b"], "L": []}, "3": {"S": ["c"]}})
    )
    assert matched_counts(tmp_path, 2) == {0: {"S": 2, "L": 0}, 3: {"S": 1}}
    with pytest.raises(ValueError, match=r"round_001\.json: no such file .*finished round 1"):
        matched_counts(tmp_path, 1)
    for bad, why in [
        ("{", "not JSON"),
        ("[1]", "expected an object of clients"),
        ('{"a": {}}', "key 'a': expected a client index"),
        ('{"0": []}', "field 0: expected an object"),
        ('{"0": {"X": []}}', "field 0.X: expected S or L"),
        ('{"0": {"S": 3}}', "field 0.S: expected S or L with a list"),
    ]:
        (sel / "round_003.json").write_text(bad)
        with pytest.raises(ValueError, match="allocation_counts_from: .*round_003.json: " + why):
            matched_counts(tmp_path, 3)


def test_allocation_counts_from_needs_random_teachable_and_an_existing_folder(tmp_path) -> None:
    from lada.config import ConfigError, load_config
    from lada.config.validate import check_resources

    with pytest.raises(
        ConfigError,
        match="allocation_counts_from.*needs plugin=lada and allocation=random_teachable",
    ):
        load_config(None, [f"allocation_counts_from={tmp_path}"])  # allocation: lada
    cfg = load_config(
        None, ["allocation=random_teachable", f"allocation_counts_from={tmp_path / 'nope'}"]
    )
    assert any(
        "allocation_counts_from" in p and "no such folder" in p for p in check_resources(cfg)
    )
    ok = load_config(None, ["allocation=random_teachable", f"allocation_counts_from={tmp_path}"])
    assert not any("allocation_counts_from" in p for p in check_resources(ok) if p)


def test_a_baselines_unlabelled_picks_for_a_logit_host_are_counted_not_silently_dropped() -> None:
    from lada.federation.report import RoundReport
    from lada.federation.server import Allocation
    from lada.hosts.gold import labelled_only

    server = SimpleNamespace(by_id={"p1": _sample(1, ""), "p2": _sample(2, "4")})
    rep = RoundReport(1)
    out = labelled_only(server, {0: Allocation(ids={"S": ["p1", "p2"], "L": ["p1"]})}, rep)
    assert out[0].ids == {"S": ["p2"], "L": []}
    assert rep.distill[0]["unlabelled_dropped"] == 2
