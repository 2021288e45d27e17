"""File-data slices: ranges applied, overlaps refused (naming both ranges), usage recorded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lada.config.schema import ClientConfig, DataConfig, RunConfig
from lada.data.slices import SliceError
from lada.runner.setup import load_run_data


def _gsm8k_file(path: Path, n: int) -> Path:
    lines = [
        json.dumps(
            {"question": f"What is {i} plus 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"}
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _cfg(tmp: Path, ranges: list[tuple[list[int] | None, list[int] | None]], public, **data):
    train = _gsm8k_file(tmp / "train.jsonl", 100)
    test = _gsm8k_file(tmp / "test.jsonl", 30)
    clients = [
        ClientConfig(
            model="slm-xs",
            train_file=str(train),
            train_range=tr,
            test_file=str(test),
            test_range=te,
        )
        for tr, te in ranges
    ]
    d = DataConfig(
        kind="files", format="gsm8k", public_file=str(train), public_range=public, **data
    )
    return RunConfig(clients=clients, data=d)


def test_ranges_are_applied_and_recorded(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, [([0, 10], [0, 5]), ([10, 30], [5, 15])], [60, 100], train_limit=15)
    data = load_run_data(cfg, tmp_path)
    assert [s.id for s in data.train[0]] == [f"gsm8k-train-{i:05d}" for i in range(10)]
    assert [s.id for s in data.train[1]] == [f"gsm8k-train-{i:05d}" for i in range(10, 25)]
    assert [s.id for s in data.test[1]] == [f"gsm8k-test-{i:05d}" for i in range(5, 15)]
    assert [s.id for s in data.public] == [f"gsm8k-train-{i:05d}" for i in range(60, 100)]
    used = json.loads((tmp_path / "data_used.json").read_text())
    by_role = {u["role"]: u for u in used["slices"]}
    assert set(by_role) == {
        "public",
        "client_0/train",
        "client_0/test",
        "client_1/train",
        "client_1/test",
    }
    t1 = by_role["client_1/train"]
    assert t1["range"] == [10, 30] and t1["count"] == 15 and t1["file"].endswith("train.jsonl")
    ids = "".join(f"gsm8k-train-{i:05d}\n" for i in range(10, 25))
    assert t1["ids_sha256"] == hashlib.sha256(ids.encode()).hexdigest()
    assert by_role["public"]["count"] == 40


def test_overlap_with_public_is_refused_naming_both_ranges(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, [([0, 10], [0, 5]), ([50, 70], [5, 15])], [60, 100])
    with pytest.raises(SliceError) as e:
        load_run_data(cfg, tmp_path)
    msg = str(e.value)
    assert "clients.1.train_range=[50, 70)" in msg and "data.public_range=[60, 100)" in msg
    assert "10 shared samples" in msg
    assert not (tmp_path / "data_used.json").exists()


def test_whole_files_overlap_and_opt_in(tmp_path: Path) -> None:
    # today's real-gsm8k failure: no ranges -> every client trains on P
    cfg = _cfg(tmp_path, [(None, None)], None)
    with pytest.raises(SliceError, match=r"clients.0.train_range=\(whole file\)"):
        load_run_data(cfg, tmp_path)
    cfg.data.allow_overlap = True
    assert len(load_run_data(cfg, tmp_path).train[0]) == 100


def test_train_test_overlap_in_one_file_and_range_past_end(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, [([0, 10], [0, 5])], [60, 100])
    cfg.clients[0].test_file = cfg.clients[0].train_file
    cfg.clients[0].test_range = [8, 12]
    with pytest.raises(SliceError, match=r"train_range=\[0, 10\).*test_range=\[8, 12\)"):
        load_run_data(cfg, tmp_path)
    cfg = _cfg(tmp_path, [([0, 10], [20, 40])], [60, 100])
    with pytest.raises(SliceError, match=r"clients.0.test_range=\[20, 40\) but .* holds only 30"):
        load_run_data(cfg, tmp_path)
    cfg = _cfg(tmp_path, [([10, 0], [0, 5])], [60, 100])
    with pytest.raises(SliceError, match="0 <= start < stop"):
        load_run_data(cfg, tmp_path)
