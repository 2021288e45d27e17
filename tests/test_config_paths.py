"""Relative paths in a config file resolve against the file's folder, not the current directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lada.config import load_config
from lada.config.paths import resolve_file_paths, resolve_path
from lada.runner.setup import load_run_data

ROOT = Path(__file__).resolve().parents[1]

GSM8K_RECORDS = [
    '{"question": "Ann has 2 apples and buys 3. How many?", "answer": "2+3=5\\n#### 5"}',
    '{"question": "Bo has 7 pens and loses 4. How many?", "answer": "7-4=3\\n#### 3"}',
]


def _files_config(tmp_path: Path) -> Path:
    """tmp/data/{train,test,public}.jsonl and tmp/configs/run.yaml naming them as ../data/…"""
    (tmp_path / "data").mkdir()
    for name in ("train", "test", "public"):
        (tmp_path / "data" / f"{name}.jsonl").write_text("\n".join(GSM8K_RECORDS) + "\n")
    (tmp_path / "configs").mkdir()
    client = {"train_file": "../data/train.jsonl", "test_file": "../data/test.jsonl"}
    cfg = {
        "data": {"kind": "files", "format": "gsm8k", "public_file": "../data/public.jsonl"},
        "server": {"model": "./models/llm"},
        "clients": [dict(client, model="./models/slm"), dict(client, model="org/hub-id")],
    }
    path = tmp_path / "configs" / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_file_paths_resolve_against_the_config_folder_from_another_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _files_config(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("..") / "configs" / "run.yaml")  # the config named relative to cwd
    data = (tmp_path / "data").resolve()
    assert cfg.data.public_file == str(data / "public.jsonl")
    assert [c.train_file for c in cfg.clients] == [str(data / "train.jsonl")] * 2
    assert [c.test_file for c in cfg.clients] == [str(data / "test.jsonl")] * 2
    # models: ./… and ../… are paths beside the config; a bare org/name stays a hub id
    assert cfg.server.model == str(tmp_path.resolve() / "configs" / "models" / "llm")
    assert cfg.clients[0].model == str(tmp_path.resolve() / "configs" / "models" / "slm")
    assert cfg.clients[1].model == "org/hub-id"
    # and the files really load from this cwd
    run_data = load_run_data(cfg, tmp_path / "run")
    assert [len(t) for t in run_data.train] == [2, 2] and len(run_data.public) == 2
    assert path.exists()


def test_override_paths_stay_relative_to_the_cwd(tmp_path: Path) -> None:
    path = _files_config(tmp_path)
    cfg = load_config(path, ["data.public_file=mine/p.jsonl", "clients.1.test_file=t.jsonl"])
    assert cfg.data.public_file == "mine/p.jsonl" and cfg.clients[1].test_file == "t.jsonl"
    assert cfg.clients[0].test_file == str((tmp_path / "data" / "test.jsonl").resolve())


def test_absolute_home_and_non_path_values_are_kept(tmp_path: Path) -> None:
    assert resolve_path("/abs/x.jsonl", tmp_path) == "/abs/x.jsonl"
    assert resolve_path("~/x.jsonl", tmp_path) == str(Path("~/x.jsonl").expanduser())
    assert resolve_path(None, tmp_path) is None and resolve_path(3, tmp_path) == 3
    raw = {"data": {"dir": "split", "public_file": 5}, "clients": "not a list", "server": None}
    out = resolve_file_paths(raw, tmp_path)
    assert out["data"] == {"dir": str(tmp_path.resolve() / "split"), "public_file": 5}
    assert out["clients"] == "not a list" and out["server"] is None


def test_real_gsm8k_config_names_the_repository_copy_from_any_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(ROOT / "configs" / "real-gsm8k.yaml")
    gsm8k = ROOT / "data" / "gsm8k"
    assert cfg.data.public_file == str(gsm8k / "train.jsonl")
    assert {c.test_file for c in cfg.clients} == {str(gsm8k / "test.jsonl")}
    assert Path(cfg.data.public_file).is_file() and Path(cfg.clients[0].test_file).is_file()


def test_a_followed_run_folder_resolves_like_a_data_file(tmp_path: Path) -> None:
    """allocation_counts_from (a run folder) is a path: relative to the config file's folder,
    absolute in the snapshot a run keeps, so a resumed run reads the same folder."""
    raw = {"allocation": "random_teachable", "allocation_counts_from": "../runs/lada_s0"}
    out = resolve_file_paths(raw, tmp_path / "configs")
    assert out["allocation_counts_from"] == str((tmp_path / "runs" / "lada_s0").resolve())
