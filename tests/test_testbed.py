"""The testbed's premises (docs/testbed.md): P holds no private fact; client tests hold both
kinds; the manifest names the private entities; unlabelled questions load; gap arithmetic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lada.data import DataError, load_split, make_split
from lada.data.loaders import load_lada_jsonl
from lada.data.synthetic import SyntheticConfig, make_world
from lada.eval.gaps import GapCell, gap_summary, probe_sets


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("testbed")
    make_split(out, seed=0)
    return out


def test_no_private_fact_in_public_set(split_dir: Path) -> None:
    split = load_split(split_dir)
    private = split.manifest["private_entities"]
    world = split.world()
    names = {n for ns in private.values() for n in ns}
    assert names and all(world.domain(d).private for d in private)
    rates = {n: world.rate(n) for n in names}
    word = re.compile(r"[a-z]+")
    unlabelled = 0
    for s in split.public:
        if not s.answer:  # an unlabelled question: no rationale, no answer, no hidden total
            unlabelled += 1
            assert s.steps == () and "total" not in s.meta and s.meta["labelled"] is False
            continue
        text = " ".join([s.question, *s.steps, s.answer])
        assert not names & set(word.findall(text)), (s.id, text)
        for name, rate in rates.items():  # the fact itself, as a rationale would state it
            assert not re.search(rf"\b{name} \d+\*{rate}=", text), (s.id, name)
    assert unlabelled == 500
    # P still asks about private entities (only clients can answer), in the clients' domains only
    asked = [s for s in split.public if not s.answer]
    assert all(names & set(s.meta["entities"]) for s in asked)
    assert {s.domain for s in asked} == {d for c in split.clients for d in c.domains}
    # and the raw file agrees: no labelled line names a private entity
    for line in (split_dir / "public.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec["answer"]:
            assert not names & set(word.findall(rec["question"] + " ".join(rec["steps"])))


def test_manifest_private_entities_match_the_world(split_dir: Path) -> None:
    manifest = json.loads((split_dir / "manifest.json").read_text(encoding="utf-8"))
    for domain, info in manifest["world"]["domains"].items():
        want = [e["name"] for e in info["entities"] if e["private"]]
        assert manifest["private_entities"][domain] == want and len(want) == 4


def test_client_tests_hold_both_kinds_with_several_steps(split_dir: Path) -> None:
    split = load_split(split_dir)
    world = split.world()
    for client in split.clients:
        kinds = {"private": 0, "general": 0}
        for s in client.test:
            kinds[s.meta["kind"]] += 1
            spec = world.domain(s.domain)
            named = set(s.meta["entities"])
            has_private = bool(named & {e.name for e in spec.private})
            assert has_private == (s.meta["kind"] == "private")
            assert 2 <= s.num_steps <= 4
        assert kinds == {"private": 250, "general": 250}
        assert all(s.meta["kind"] == "private" and s.num_steps <= 2 for s in client.train)


def test_labelled_public_questions_can_be_restored_and_options_validate(tmp_path: Path) -> None:
    kw = dict(train_per_client=10, test_per_client=10, public_size=40)
    labelled = make_split(tmp_path / "a", public_private_labels=True, **kw)
    split = load_split(tmp_path / "a")
    assert all(s.answer for s in split.public) and labelled["private_entities"]
    with pytest.raises(ValueError, match="test_steps"):
        make_split(tmp_path / "b", test_steps=(3, 9), **kw)
    make_split(tmp_path / "c", train_steps=None, test_steps=(1, 1), **kw)
    assert {s.num_steps for c in load_split(tmp_path / "c").clients for s in c.test} == {1}


def test_loader_accepts_unlabelled_only_without_steps(tmp_path: Path) -> None:
    good = {
        "id": "q",
        "domain": "d",
        "question": "How many?",
        "answer": "",
        "answer_type": "number",
    }
    bad = dict(good, steps=["a 1*2=2"])
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="no steps") as info:
        list(load_lada_jsonl(path))
    assert info.value.line == 2


def test_probe_sets_cover_kinds_and_steps() -> None:
    world = make_world(SyntheticConfig())
    probes = probe_sets(world, ["market"], 5, (1, 2, 3, 4), seed=0)
    cells = {(s.meta["kind"], s.num_steps) for s in probes}
    assert cells == {(k, n) for k in ("general", "private") for n in (1, 2, 3, 4)}
    assert len(probes) == 40 and probes == probe_sets(world, ["market"], 5, (1, 2, 3, 4), seed=0)


def test_gap_summary_signs() -> None:
    cells = [
        GapCell(0, "llm", "L", "base", "general", 3, 10, 8),
        GapCell(0, "slm", "S", "base", "general", 3, 10, 1),
        GapCell(0, "slm", "S", "local", "general", 3, 10, 3),
        GapCell(0, "llm", "L", "base", "private", 3, 10, 1),
        GapCell(0, "slm", "S", "local", "private", 3, 10, 6),
    ]
    (row,) = gap_summary(cells)
    assert row["client"] == 0 and row["num_steps"] == 3
    assert row["reasoning_gap"] == pytest.approx(0.5) and row["knowledge_gap"] == pytest.approx(0.5)


def test_logit_hosts_keep_only_labelled_picks() -> None:
    from types import SimpleNamespace

    from lada.federation.server import Allocation
    from lada.hosts.gold import labelled_only

    world = make_world(SyntheticConfig())
    probes = probe_sets(world, ["market"], 2, (1,), seed=0)  # one general, one private kind
    general, private = probes[0], probes[-1]
    from lada.data.split import unlabelled

    server = SimpleNamespace(by_id={"g": general, "p": unlabelled(private)})
    alloc = {0: Allocation(ids={"S": ["p", "g"], "L": ["p"]}, mode={"S": "bandit"})}
    out = labelled_only(server, alloc)
    assert out[0].ids == {"S": ["g"], "L": []} and out[0].mode == {"S": "bandit"}
    assert alloc[0].ids["S"] == ["p", "g"]  # the caller's allocation is not changed


def test_gaps_command_on_a_split(tmp_path: Path, tiny_overrides: list[str], capsys) -> None:
    from lada.cli import main

    split = tmp_path / "split"
    make_split(split, seed=0, train_per_client=24, test_per_client=8, public_size=30)
    out = tmp_path / "gaps.json"
    opts = ["--n", "2", "--json", str(out), "--capacity", "2"]
    assert main(["data", "gaps", str(split), *tiny_overrides, *opts]) == 0
    printed = capsys.readouterr().out
    assert "reasoning gap" in printed and "knowledge gap" in printed and "client 2" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    cells = report["cells"]
    stages = {(c["client"], c["model"], c["stage"]) for c in cells}
    for k in range(3):
        assert {(k, "llm", "base"), (k, "slm", "base"), (k, "slm", "local")} <= stages
        assert (k, "slm", "capacity") in stages
    assert all(c["n"] == 2 for c in cells)
    assert {(g["client"], g["num_steps"]) for g in report["gaps"]} == {
        (k, s) for k in range(3) for s in (1, 2, 3, 4)
    }
    assert main(["data", "gaps", str(tmp_path / "nowhere")]) == 2
