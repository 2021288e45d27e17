"""The synthetic multi-domain benchmark: determinism, hidden knowledge, answers and options."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from lada.data import Sample, SyntheticConfig, general_corpus, generate, make_world
from lada.data.synthetic import DOMAIN_CATALOG, World


@pytest.fixture(scope="module")
def world() -> World:
    return make_world(SyntheticConfig())


@pytest.fixture(scope="module")
def samples(world: World) -> list[Sample]:
    return generate(world, 600, seed=7, answer_format="mc")


def _dicts(samples: list[Sample]) -> list[dict]:
    return [s.to_dict() for s in samples]


def test_world_shape(world: World) -> None:
    cfg = world.config
    assert world.domain_names == ("market", "pharmacy", "workshop", "garden")
    names = [e.name for d in world.domains for e in d.entities]
    assert len(names) == len(set(names)) == 40
    for d in world.domains:
        assert [e.private for e in d.entities] == [False] * 6 + [True] * 4
        assert all(cfg.rate_min <= e.rate <= cfg.rate_max for e in d.entities)
    assert world.domain("market").unit == "coins" and world.domain("pharmacy").unit == "pills"
    all_names = [e for t in DOMAIN_CATALOG.values() for e in t.entities]
    assert len(all_names) == len(set(all_names)) and len(DOMAIN_CATALOG) >= 6


def test_world_depends_only_on_knowledge_seed() -> None:
    a, b = make_world(SyntheticConfig()), make_world(SyntheticConfig(max_steps=3))
    assert a.to_dict() == b.to_dict()
    c = make_world(SyntheticConfig(knowledge_seed=99))
    assert a.to_dict() != c.to_dict()
    six = make_world(SyntheticConfig(domains=tuple(DOMAIN_CATALOG)))
    assert six.to_dict()["domains"]["market"] == a.to_dict()["domains"]["market"]
    assert len(six.domains) == 6


def test_determinism(world: World, samples: list[Sample]) -> None:
    assert _dicts(generate(world, 600, seed=7, answer_format="mc")) == _dicts(samples)
    assert _dicts(
        generate(make_world(SyntheticConfig()), 600, seed=7, answer_format="mc")
    ) == _dicts(samples)
    assert _dicts(generate(world, 600, seed=8, answer_format="mc")) != _dicts(samples)
    assert [s.id for s in samples[:2]] == ["syn-00000", "syn-00001"]


def test_rates_never_stated(world: World, samples: list[Sample]) -> None:
    for s in samples:
        assert re.findall(r"\d+", s.question) == [str(c) for c in s.meta["counts"]]
        assert "*" not in s.question and "=" not in s.question
        unit = world.domain(s.domain).unit
        assert s.question.endswith(f"How many {unit}?")
        for e in s.meta["entities"]:
            assert e in s.question


def test_rationale_total_matches_answer(world: World, samples: list[Sample]) -> None:
    for s in samples:
        n = s.meta["num_steps"]
        assert len(s.steps) == n == len(s.meta["entities"]) == len(set(s.meta["entities"]))
        expected = sum(
            c * world.rate(e) for c, e in zip(s.meta["counts"], s.meta["entities"], strict=True)
        )
        assert s.meta["total"] == expected
        assert s.steps[-1].endswith(f"={expected}")
        running = 0
        for step, c, e in zip(s.steps, s.meta["counts"], s.meta["entities"], strict=True):
            running += c * world.rate(e)
            assert step.startswith(f"{e} {c}*{world.rate(e)}={c * world.rate(e)}")
            assert step.endswith(str(running))
        assert s.meta["private"] == any(
            world.rate(e) and _is_private(world, e) for e in s.meta["entities"]
        )


def _is_private(world: World, name: str) -> bool:
    return any(e.private for d in world.domains for e in d.entities if e.name == name)


def test_mc_options(samples: list[Sample]) -> None:
    positions = Counter()
    ranks = Counter()
    for s in samples:
        assert s.answer_type == "mc" and s.choices is not None and len(s.choices) == 4
        values = [int(c) for c in s.choices]
        assert len(set(values)) == 4 and min(values) > 0
        assert values["ABCD".index(s.answer)] == s.meta["total"]
        assert s.target().endswith(f"\nAnswer: {s.answer}")
        positions[s.answer] += 1
        ranks[sorted(values).index(s.meta["total"])] += 1
    assert all(80 <= positions[c] <= 220 for c in "ABCD"), positions
    assert all(80 <= ranks[r] <= 220 for r in range(4)), ranks  # rank gives nothing away


def test_number_form_and_five_choices(world: World) -> None:
    nums = generate(world, 50, seed=1, answer_format="number")
    for s in nums:
        assert s.answer_type == "number" and s.choices is None and s.answer == str(s.meta["total"])
        assert s.target().endswith(f"Answer: {s.meta['total']}")
    five = generate(make_world(SyntheticConfig(n_choices=5)), 50, seed=1, answer_format="mc")
    assert all(s.choices is not None and len(set(s.choices)) == 5 for s in five)


def test_knowledge_modes(world: World) -> None:
    private = generate(world, 300, seed=3, knowledge="private")
    assert all(s.meta["private"] for s in private)
    assert all(any(_is_private(world, e) for e in s.meta["entities"]) for s in private)
    general = generate(world, 300, seed=3, knowledge="general")
    assert not any(_is_private(world, e) for s in general for e in s.meta["entities"])
    assert max(s.num_steps for s in general) <= world.config.n_general
    mixed = generate(world, 300, seed=3, knowledge="mixed", private_fraction=0.3)
    assert sum(s.meta["private"] for s in mixed) == 90


def test_steps_domains_and_weights(world: World) -> None:
    few = generate(world, 200, seed=2, steps=(2, 3), domains=["garden"])
    assert {s.num_steps for s in few} == {2, 3} and {s.domain for s in few} == {"garden"}
    even = generate(world, 400, seed=2)
    assert Counter(s.domain for s in even) == {d: 100 for d in world.domain_names}
    assert {s.num_steps for s in even} == set(range(1, 7))
    cfg = SyntheticConfig(step_weights=(0, 0, 0, 0, 0, 1))
    assert {s.num_steps for s in generate(make_world(cfg), 50, seed=2)} == {6}
    with pytest.raises(ValueError):
        SyntheticConfig(step_weights=(1, 2))
    with pytest.raises(ValueError):
        SyntheticConfig(domains=("market", "moon"))


def test_general_corpus(world: World) -> None:
    big = general_corpus(world, 200, seed=5)
    small = general_corpus(world, 200, seed=5, steps=(1, 2), id_prefix="slm")
    for corpus in (big, small):
        assert not any(s.meta["private"] for s in corpus)
        assert {s.domain for s in corpus} == set(world.domain_names)
    assert {s.num_steps for s in small} == {1, 2} and small[0].id == "slm-00000"
    assert max(s.num_steps for s in big) == world.config.n_general


def test_question_lengths_stay_small(samples: list[Sample]) -> None:
    longest = max(len(s.prompt()) + len(s.target()) for s in samples)
    assert longest < 450
