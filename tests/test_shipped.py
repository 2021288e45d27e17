"""Shipped zoo checkpoints: copied into an empty cache after their sha256 check, never
pretrained again; a file that fails its check is reported and the model is built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lada.config import load_config
from lada.provision import prepare as prep
from lada.runner.setup import world_config
from tests.conftest import TINY


@pytest.fixture()
def tiny_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The TINY zoo prepared in one cache and shipped into a temporary package folder."""
    cfg = load_config(None, TINY)
    world = world_config(cfg)
    monkeypatch.setenv("LADA_CACHE", str(tmp_path / "maker"))
    monkeypatch.setattr(prep, "shipped_root", lambda: tmp_path / "zoo_weights")
    prep.prepare_models(["slm-xs"], cfg.prepare, world)
    prep.ship(["slm-xs"], cfg.prepare, world)
    monkeypatch.setenv("LADA_CACHE", str(tmp_path / "fresh"))
    return cfg, world, tmp_path


def test_an_empty_cache_gets_the_shipped_checkpoint(tiny_shipped, monkeypatch) -> None:
    cfg, world, tmp = tiny_shipped
    manifest = json.loads((tmp / "zoo_weights" / "manifest.json").read_text())
    assert manifest["recipe"]["per_model"]["slm-xs"]["max_steps"] == cfg.prepare.slm_steps

    def no_training(*a, **k):
        raise AssertionError("pretrained although a checkpoint is shipped")

    monkeypatch.setattr("lada.train.sft.sft", no_training)
    out = prep.prepare_model("slm-xs", cfg.prepare, world)
    assert out.parent.parent == tmp / "fresh"
    shipped = manifest["models"]["slm-xs"]["files"]
    assert {p.name: prep.sha256_file(p) for p in out.iterdir()} == shipped
    assert "matches" in prep.compare_with_shipped("slm-xs", out)


def test_a_shipped_file_that_fails_its_check_is_not_used(tiny_shipped, capsys) -> None:
    cfg, world, tmp = tiny_shipped
    entry = json.loads((tmp / "zoo_weights" / "manifest.json").read_text())["models"]["slm-xs"]
    weights = tmp / "zoo_weights" / "models" / entry["dir"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    out = prep.prepare_model("slm-xs", cfg.prepare, world)
    err = capsys.readouterr().err
    assert "fails its sha256 check (model.safetensors" in err and "pretraining it now" in err
    assert prep.sha256_file(out / "model.safetensors") == entry["files"]["model.safetensors"]
    # rebuilt here, on the machine that shipped it: equal to the manifest's sha256s
    assert prep.compare_with_shipped("slm-xs", out).startswith("matches")


def test_the_shipped_checkpoints_are_those_of_the_embedded_default() -> None:
    """Their keys are the embedded default's: a recipe change without shipping again fails."""
    manifest = prep.shipped_manifest()
    cfg = load_config()
    world = world_config(cfg)
    names = sorted({m.model for m in [cfg.server, *cfg.clients]})
    assert sorted(manifest["models"]) == names
    for n in names:
        assert manifest["models"][n]["dir"] == prep.checkpoint_dir(n, cfg.prepare, world).name
        folder = prep.shipped_root() / "models" / manifest["models"][n]["dir"]
        assert (folder / "model.safetensors").stat().st_size > 100_000


def test_pretraining_progress_in_a_log_names_steps_and_time_left() -> None:
    import queue

    from lada.utils.progress import Board

    lines: list[str] = []
    board = Board(queue.Queue(), "pretraining", log=lines.append)
    board.handle("slm-s", "start", 20)
    for _ in range(20):
        board.handle("slm-s", "advance", 1)
        board.handle("slm-s", "info", "loss 1.234")
    assert len(lines) == 10  # one line per tenth
    assert lines[0].startswith("pretraining slm-s: 2/20 steps (10%), loss 1.234, about ")
    assert lines[0].endswith(" left") and lines[-1].endswith("20/20 steps (100%), loss 1.234, done")
