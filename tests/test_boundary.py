"""A teacher's knowledge boundary and abstention (lada.train.boundary, ours): the k-NN test,
who abstains where, that an abstained pick is learnt by nobody and how the filter rewards it."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from lada.config.schema import DistillConfig, EvalConfig, LocalTrainConfig
from lada.data.sample import Sample
from lada.federation.protocol import GenerateIns, Task
from lada.federation.server import LearnerLosses
from lada.filter.bandit import LearnabilityFilter
from lada.filter.config import FilterConfig
from lada.filter.rewarding import reward_picks, unteachable_rows
from lada.models import build_model, build_tokenizer
from lada.train.boundary import boundary_threshold, distinct, knowledge_boundary
from lada.train.distill import learn_from_paths
from lada.train.loop import OptimConfig


def _cluster(rng: np.random.Generator, centre: np.ndarray, n: int, spread: float) -> np.ndarray:
    return centre + spread * rng.standard_normal((n, centre.size))


def test_boundary_admits_the_reference_cluster_and_refuses_a_far_one() -> None:
    rng = np.random.default_rng(0)
    a, b = np.zeros(16), np.zeros(16)
    a[0], b[1] = 1.0, 1.0
    ref = _cluster(rng, a, 200, 0.1)
    near = _cluster(rng, a, 100, 0.1)
    far = _cluster(rng, b, 100, 0.1)
    inside = knowledge_boundary(ref, np.vstack([near, far]), 0.05)
    assert inside[:100].mean() > 0.85  # ~95 % by construction of the threshold
    assert not inside[100:].any()


def test_threshold_is_a_leave_one_out_quantile_and_grows_with_it() -> None:
    ref = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    # nearest other point: 0.995 for the first two, 0.0995 for the third
    lo, hi = boundary_threshold(ref, 0.0), boundary_threshold(ref, 1.0)
    assert lo == pytest.approx(0.1 / np.sqrt(1.01), abs=1e-9)
    assert hi == pytest.approx(1 / np.sqrt(1.01), abs=1e-9)
    assert boundary_threshold(ref[:1], 0.5) == float("-inf")  # one point: nothing to compare


def test_no_reference_teaches_nothing_and_quantile_is_checked() -> None:
    q = np.ones((3, 4))
    assert not knowledge_boundary(np.zeros((0, 4)), q, 0.05).any()
    assert knowledge_boundary(np.ones((1, 4)), q, 0.05).all()
    assert knowledge_boundary(np.ones((2, 4)), np.zeros((0, 4)), 0.05).size == 0
    with pytest.raises(ValueError):
        knowledge_boundary(np.ones((2, 4)), q, 1.5)


def test_distinct_drops_repeats_then_draws_a_seeded_subset() -> None:
    texts = ["a", "b", "a", "c", "b", "d"]
    assert distinct(texts) == ["a", "b", "c", "d"]
    sub = distinct(texts, limit=2, seed=3)
    assert len(sub) == 2 and set(sub) <= {"a", "b", "c", "d"}
    assert sub == distinct(texts, limit=2, seed=3)


# ---- the roles --------------------------------------------------------------------------


def _s(i: int, domain: str, entity: str, answer: str = "") -> Sample:
    return Sample(
        id=f"{domain}-{i}{'' if answer else '-u'}",
        domain=domain,
        question=f"Ava buys {i} {entity}. How many coins?",
        answer=answer,
        answer_type="number",
        steps=(f"{entity} {i}*2={2 * i}",) if answer else (),
    )


FIGS = [_s(i, "market", "fig", str(2 * i)) for i in range(1, 9)]
PUBLIC = [_s(i, "market", "fig") for i in range(1, 5)] + [
    _s(i, "garden", "tulip iris lotus poppy aster") for i in range(1, 5)
]


@pytest.fixture(scope="module")
def tok():
    corpus = [s.prompt() + s.target() for s in FIGS] + [s.prompt() for s in PUBLIC]
    return build_tokenizer(corpus * 4, vocab_size=220)


def _client(tok, tmp_path, teaches: str, quantile: float = 0.05, model=None):
    from lada.federation.client import ClientRole, ClientSettings

    settings = ClientSettings(
        LocalTrainConfig(),
        DistillConfig(
            slm_teaches=teaches,  # type: ignore[arg-type]
            boundary_quantile=quantile,
            max_new_tokens=24,
        ),
        EvalConfig(),
    )
    load = lambda: (model or build_model("slm-xs", tok, seed=0), tok)  # noqa: E731
    return ClientRole(0, load, FIGS, [], PUBLIC, settings, tmp_path / teaches)


def test_client_abstains_outside_its_boundary_and_sends_empty_paths(tok, tmp_path) -> None:
    ids = [s.id for s in PUBLIC]
    client = _client(tok, tmp_path, "boundary", quantile=0.0)
    client.enter_round(1)
    inside = client.inside_boundary(ids)
    assert inside.dtype == bool and inside.shape == (8,)
    # questions about the client's own entity lie nearer its training questions than the others
    assert inside[:4].sum() > inside[4:].sum()
    res = client.handle(Task.GENERATE, GenerateIns(1, ids))
    assert res.ids == ids
    assert [p == "" for p in res.paths] == [not x for x in inside]
    every = _client(tok, tmp_path, "all").handle(Task.GENERATE, GenerateIns(1, ids))
    assert all(isinstance(p, str) for p in every.paths) and every.ids == ids
    assert client.inside_boundary([]).size == 0


@pytest.fixture(scope="module")
def fig_model(tok):
    """slm-xs trained until it answers the fig questions (and, alike, the public ones)."""
    from lada.train.sft import sft

    model = build_model("slm-xs", tok, seed=0)
    sft(
        model,
        tok,
        [s.prompt() for s in FIGS],
        [s.target() for s in FIGS],
        OptimConfig(lr=5e-3, batch_size=8, max_steps=150, warmup_steps=5),
    )
    return model


def test_agreement_counts_are_seeded_and_high_for_a_model_sure_of_its_answers(tok, fig_model):
    from lada.data.extract import extract_answer
    from lada.eval.consistency import agreement_counts
    from lada.eval.generate import generate_paths

    prompts = [s.prompt() for s in FIGS]
    greedy = [extract_answer(p, "number") for p in generate_paths(fig_model, tok, prompts)]
    assert greedy == [s.answer for s in FIGS]  # it learnt them
    kw = {"samples": 4, "temperature": 0.7, "max_new_tokens": 24, "seed": 5}
    sure = agreement_counts(fig_model, tok, prompts, greedy, **kw)
    assert sure.shape == (8,) and sure.max() <= 4 and sure.mean() >= 3.0
    assert np.array_equal(sure, agreement_counts(fig_model, tok, prompts, greedy, **kw))
    wrong = agreement_counts(fig_model, tok, prompts, ["999"] * 8, **kw)
    assert wrong.sum() == 0  # nobody reaches an answer it never writes
    assert agreement_counts(fig_model, tok, prompts, [None] * 8, **kw).sum() == 0
    hot = agreement_counts(build_model("slm-xs", tok, seed=1), tok, prompts, greedy, **kw)
    assert hot.mean() < sure.mean()  # an untrained model does not agree with these answers


def test_consistent_teaching_is_a_subset_of_the_boundary(tok, tmp_path, fig_model) -> None:
    ids = [s.id for s in PUBLIC]
    b = _client(tok, tmp_path, "boundary", quantile=0.0, model=fig_model)
    c = _client(tok, tmp_path, "consistent", quantile=0.0, model=fig_model)
    pb = b.handle(Task.GENERATE, GenerateIns(1, ids)).paths
    pc = c.handle(Task.GENERATE, GenerateIns(1, ids)).paths
    assert all(x == "" or x == y for x, y in zip(pc, pb, strict=True))  # never more, same text
    assert any(pb) and sum(map(bool, pc)) <= sum(map(bool, pb))


def test_server_teaches_only_labelled_questions_unless_told_otherwise(tok) -> None:
    from lada.federation.server import ServerRole, ServerSettings

    public = FIGS[:2] + PUBLIC[:2]  # two labelled, two unlabelled
    for teaches, empty in (("labelled", [False, False, True, True]), ("all", [False] * 4)):
        settings = ServerSettings(
            DistillConfig(llm_teaches=teaches, max_new_tokens=4),  # type: ignore[arg-type]
            EvalConfig(),
            FilterConfig(),
        )
        server = ServerRole(lambda: (build_model("slm-xs", tok, seed=0), tok), public, {}, settings)
        paths = server.generate(1, [s.id for s in public])
        assert list(paths) == [s.id for s in public]
        got = [paths[s.id] == "" for s in public]
        # an untrained model may write nothing at all: only the abstentions must be empty
        assert [g for g, e in zip(got, empty, strict=True) if e] == [e for e in empty if e]


def test_an_abstained_pick_enters_no_loss_and_no_pair(tok) -> None:
    model = build_model("slm-xs", tok, seed=0)
    teacher = [s.target() for s in FIGS[:4]] + [""] * 4
    own = [f"fig {i}*3={3 * i}\nAnswer: {3 * i}" for i in range(1, 9)]
    cfg = DistillConfig(unverified="keep")
    optim = OptimConfig(lr=3e-3, batch_size=4, epochs=2, warmup_steps=0)
    out = learn_from_paths(model, tok, FIGS, teacher, own, cfg, optim)
    assert out.trained.tolist() == [True] * 4 + [False] * 4
    assert out.num_pairs == 4  # only the four with a teacher path
    # an empty own path (the LLM abstained on its own side) makes no pair either
    out2 = learn_from_paths(model, tok, FIGS, [s.target() for s in FIGS], [""] * 8, cfg, optim)
    assert out2.num_pairs == 0 and out2.trained.all()


def _losses(paths: list[str], trained: list[bool]) -> LearnerLosses:
    n = len(paths)
    return LearnerLosses(
        ids=[f"p{i}" for i in range(n)],
        loss_before=np.full(n, 1.0),
        loss_after=np.linspace(0.2, 0.8, n),
        margin=np.zeros(n),
        trained=np.asarray(trained),
        paths=paths,
    )


@pytest.mark.parametrize("floor", [0.0, None])
def test_unteachable_picks_get_the_floor_reward(floor) -> None:
    pool = np.random.default_rng(0).standard_normal((10, 6)).astype(np.float32)
    filt = LearnabilityFilter(6, FilterConfig(hidden=16, epochs=1, unteachable_reward=floor))
    filt.select(pool, 1)
    # picks 0-2 trained, 3-4 abstained (empty path), 5 left out by its label (a path, untrained)
    losses = _losses(["a", "b", "c", "", "", "d"], [True, True, True, False, False, False])
    assert unteachable_rows(losses).tolist() == [3, 4, 5]
    out = reward_picks(filt, losses, {f"p{i}": i for i in range(10)})
    n = 6 if floor is not None else 3
    assert out["n"] == n and filt.hist_r.size == n
    assert out["n_untrained"] == 3 and out["n_abstained"] == 2
    if floor is not None:
        assert filt.hist_r[3:].tolist() == [0.0, 0.0, 0.0]
        assert out["mean_reward"] < out["mean_reward_trained"]
    assert np.all(filt.hist_r[:3] > 0.0)


def test_without_recorded_paths_untrained_picks_stay_unrewarded() -> None:
    """A logit host's picks (no teacher paths recorded): its own rule left them out."""
    pool = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    filt = LearnabilityFilter(4, FilterConfig(hidden=8, epochs=1))
    filt.select(pool, 1)
    losses = _losses(["a"] * 4, [True, False, True, False])
    losses.paths = None
    assert unteachable_rows(losses).size == 0
    out = reward_picks(filt, losses, {f"p{i}": i for i in range(6)})
    assert out["n"] == 2 and filt.hist_r.size == 2


def test_sample_paths_is_seeded_and_cold_sampling_is_greedy(tok) -> None:
    from lada.eval.generate import generate_paths, sample_paths

    model = build_model("slm-xs", tok, seed=2)
    prompts = [s.prompt() for s in FIGS[:4]]
    kw = {"max_new_tokens": 12}
    a = sample_paths(model, tok, prompts, samples=3, temperature=1.0, seed=7, **kw)
    assert [len(x) for x in a] == [3] * 4
    assert a == sample_paths(model, tok, prompts, samples=3, temperature=1.0, seed=7, **kw)
    assert a != sample_paths(model, tok, prompts, samples=3, temperature=1.0, seed=8, **kw)
    cold = sample_paths(model, tok, prompts, samples=2, temperature=1e-4, seed=0, **kw)
    greedy = generate_paths(model, tok, prompts, **kw)
    assert cold == [[g, g] for g in greedy]
