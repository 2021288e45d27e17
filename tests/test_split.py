"""Federated splits: sizes, manifest hashes, byte-identical regeneration, tamper detection."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lada.data import DataError, SplitConfig, load_split, make_split
from lada.data.split import sha256_file


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def default_split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("split")
    return out, make_split(out, seed=0)


def test_default_sizes_and_manifest(default_split: tuple[Path, dict]) -> None:
    out, manifest = default_split
    files = manifest["files"]
    assert len(files) == 7 and manifest["total_samples"] == 3 * (1000 + 500) + 1000
    for k in range(3):
        assert files[f"clients/client_{k}/train.jsonl"]["num_samples"] == 1000
        assert files[f"clients/client_{k}/test.jsonl"]["num_samples"] == 500
    assert files["public.jsonl"]["num_samples"] == 1000
    for rel, info in files.items():
        path = out / rel
        assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert len(path.read_text(encoding="utf-8").splitlines()) == info["num_samples"]
    on_disk = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == manifest and on_disk["seed"] == 0
    assert (out / "manifest.json").read_text() == json.dumps(
        manifest, sort_keys=True, indent=2
    ) + "\n"
    assert manifest["settings"]["num_clients"] == 3 and manifest["settings"]["max_steps"] == 6
    assert [c["domains"] for c in manifest["clients"]] == [["market"], ["pharmacy"], ["workshop"]]
    rates = manifest["world"]["domains"]["market"]["entities"]
    assert len(rates) == 10 and sum(e["private"] for e in rates) == 4


def test_load_split_contents(default_split: tuple[Path, dict]) -> None:
    out, manifest = default_split
    split = load_split(out)
    assert split.manifest == manifest and split.config == SplitConfig()
    world = split.world()
    ids = set()
    for k, client in enumerate(split.clients):
        assert len(client.train) == 1000 and len(client.test) == 500
        assert client.domains == (world.domain_names[k],)
        for s in client.train:
            assert s.domain == client.domains[0] and s.meta["private"]
            assert 1 <= s.num_steps <= 2
        for s in client.test:
            assert s.domain == client.domains[0] and 2 <= s.num_steps <= 4
        assert sum(s.meta["private"] for s in client.test) == 250
        ids.update(s.id for s in [*client.train, *client.test])
    public = split.public
    assert len(public) == 1000 and sum(s.meta["private"] for s in public) == 500
    assert {s.domain for s in public} == set(world.domain_names)
    assert all(1 <= s.num_steps <= 4 for s in public)
    ids.update(s.id for s in public)
    assert len(ids) == 5500


def test_make_split_is_byte_identical(tmp_path: Path) -> None:
    settings = {"train_per_client": 40, "test_per_client": 20, "public_size": 30}
    make_split(tmp_path / "a", seed=3, **settings)
    make_split(tmp_path / "b", seed=3, **settings)
    make_split(tmp_path / "c", seed=4, **settings)
    a, b, c = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert a == b and set(a) == set(c)
    assert a["public.jsonl"] != c["public.jsonl"]
    assert not [p for p in (tmp_path / "a").rglob("*") if p.name.endswith(".tmp")]


def test_load_split_detects_tampering(tmp_path: Path) -> None:
    make_split(
        tmp_path, seed=1, num_clients=2, train_per_client=10, test_per_client=5, public_size=10
    )
    target = tmp_path / "clients" / "client_1" / "test.jsonl"
    load_split(tmp_path)
    target.write_text(
        target.read_text(encoding="utf-8").replace('"question": "', '"question": " ', 1),
        encoding="utf-8",
    )
    with pytest.raises(DataError, match="sha256 mismatch") as info:
        load_split(tmp_path)
    assert info.value.path == str(target)
    target.unlink()
    with pytest.raises(DataError, match="missing"):
        load_split(tmp_path)


def test_dirichlet_partition_and_options(tmp_path: Path) -> None:
    manifest = make_split(
        tmp_path,
        seed=2,
        partition="dirichlet",
        num_clients=4,
        train_per_client=100,
        test_per_client=20,
        public_size=10,
        answer_format="number",
        domains=("market", "garden", "bakery"),
    )
    split = load_split(tmp_path)
    for info, client in zip(manifest["clients"], split.clients, strict=True):
        weights = info["domain_weights"]
        assert set(weights) == {"market", "garden", "bakery"}
        assert abs(sum(weights.values()) - 1) < 1e-4
        assert {s.domain for s in client.train + client.test} == set(client.domains)
        assert all(s.answer_type == "number" and s.meta["private"] for s in client.train)
    assert sha256_file(tmp_path / "public.jsonl") == manifest["files"]["public.jsonl"]["sha256"]


def test_from_overrides_and_unknown_keys(tmp_path: Path) -> None:
    cfg = SplitConfig.from_overrides(
        {
            "num_clients": "5",
            "dirichlet_alpha": "0.1",
            "partition": "dirichlet",
            "domains": "market,transit",
            "step_weights": "1,1,2,2,3,3",
            "answer_format": "number",
        }
    )
    assert (cfg.num_clients, cfg.dirichlet_alpha, cfg.partition) == (5, 0.1, "dirichlet")
    assert cfg.domains == ("market", "transit") and cfg.step_weights == (1, 1, 2, 2, 3, 3)
    assert SplitConfig.from_overrides({"step_weights": "none"}).step_weights is None
    assert cfg.synthetic().domains == ("market", "transit")
    with pytest.raises(ValueError, match="unknown split setting 'clients'"):
        SplitConfig.from_overrides({"clients": "3"})
    with pytest.raises(ValueError, match="num_clients"):
        SplitConfig.from_overrides({"num_clients": "three"})
    with pytest.raises(ValueError, match="partition"):
        SplitConfig.from_overrides({"partition": "iid"})
    with pytest.raises(ValueError, match="unknown split setting"):
        make_split(tmp_path, bogus=1)


def test_public_step_weights_shape_only_the_public_set(tmp_path: Path) -> None:
    kw = dict(seed=1, train_per_client=60, test_per_client=300, public_size=600)
    base = make_split(tmp_path / "a", **kw)
    short = make_split(tmp_path / "b", public_step_weights=(5, 1, 0, 0, 0, 0), **kw)
    steps = short["files"]["public.jsonl"]["stats"]["num_steps"]
    assert set(steps) == {"1", "2"} and steps["1"] > 3 * steps["2"]
    for rel, info in base["files"].items():  # the clients' data does not change
        if rel != "public.jsonl":
            assert short["files"][rel]["sha256"] == info["sha256"], rel
    cfg = SplitConfig.from_overrides({"public_step_weights": "3,3,1,1,1,1"})
    assert cfg.public_step_weights == (3, 3, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="public_step_weights"):
        SplitConfig(public_step_weights=(1, 1))
