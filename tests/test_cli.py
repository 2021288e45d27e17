"""The `lada` command line: data make/stats, errors, help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lada.cli import main

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT / "data" / "gsm8k"


def test_data_make_paper_sizes_and_identical_files(tmp_path: Path, capsys) -> None:
    assert main(["data", "make", "--out", str(tmp_path / "a"), "--seed", "3"]) == 0
    assert main(["data", "make", "--out", str(tmp_path / "b"), "--seed", "3"]) == 0
    counts = json.loads(capsys.readouterr().out.split("\n}\n")[0] + "\n}")["counts"]
    assert sorted(counts.values()) == [500, 500, 500, 1000, 1000, 1000, 1000]
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jsonl"))
    assert len(files_a) == 7
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["seed"] == 3


def test_data_stats_gsm8k_prints_one_json_object(capsys) -> None:
    assert main(["data", "stats", str(GSM8K / "test.jsonl"), "--format", "gsm8k"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["num_samples"] == 1319 and stats["answer_types"] == {"number": 1319}


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 4"}\n{"question": "q2"}\n')
    assert main(["data", "stats", str(bad), "--format", "gsm8k"]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "answer" in err
    assert main(["data", "make", "--out", str(tmp_path / "x"), "num_clientz=3"]) == 2
    assert "num_clientz" in capsys.readouterr().err


def test_run_rejects_unknown_override(tmp_path: Path, capsys) -> None:
    assert main(["run", "--out", str(tmp_path / "r"), "roundz=2"]) == 2
    assert "roundz" in capsys.readouterr().err
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


@pytest.mark.parametrize("cmd", [[], ["data"], ["models"]])
def test_help_lists_commands(cmd: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lada.cli", *cmd, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "usage: lada" in out


def test_bench_only_names_runs_of_the_suite(tmp_path: Path) -> None:
    from lada.bench.run import bench

    with pytest.raises(ValueError, match="matches no run"):
        bench(tmp_path / "b", quick=True, only=["nosuchhost__*"])


def test_train_lora_adapters_follow_the_seed(tmp_path: Path) -> None:
    """``lada train --lora`` draws its new adapters from the run's seed (``seed=``): the same
    seed gives the same adapters whatever the global generator did before, another seed others."""
    import torch

    from lada.cli import _load_model
    from lada.models import build_model, build_tokenizer

    tok = build_tokenizer(["Double 3\nAnswer: 6"] * 4, vocab_size=120)
    build_model("slm-xs", tok, seed=3).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)

    def adapters(seed: int, noise: int) -> list[torch.Tensor]:
        torch.manual_seed(noise)  # the global generator in some other state each time
        model, _ = _load_model(str(tmp_path), True, seed=seed)
        return [p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n]

    first, again, other = adapters(0, 1), adapters(0, 2), adapters(1, 1)
    assert first and all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
