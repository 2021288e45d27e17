"""The real-model config (hub ids, LoRA, GSM8K files) runs when local checkpoints stand in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lada.config import load_config
from lada.data.loaders import load_gsm8k
from lada.models.tokenizer import build_tokenizer
from lada.models.zoo import build_model, get_spec
from lada.runner.run import run

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT / "data" / "gsm8k"


@pytest.fixture(scope="module")
def local_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny save_pretrained folders standing in for hub models (two families, two sizes)."""
    texts = [s.prompt() + s.target() for s in load_gsm8k(GSM8K / "test.jsonl")[:300]]
    tok = build_tokenizer(texts, vocab_size=300)
    out = {}
    for name in ("slm-xs", "slm-s", "llm-xs"):
        d = tmp_path_factory.mktemp(name)
        build_model(get_spec(name), tok, seed=0).save_pretrained(d)
        tok.save_pretrained(d)
        out[name] = d
    return out


def test_real_gsm8k_config_runs_with_local_checkpoints(
    tmp_path: Path, local_checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the config's data paths resolve against configs/, not the cwd
    small = [
        "rounds=1",
        "threads=1",
        f"server.model={local_checkpoints['llm-xs']}",
        "server.dtype=float32",
        "data.public_range=[6000, 6030]",
        "filter.budget=4",
        "filter.epochs=1",
        "filter.hidden=16",
        "distill.max_new_tokens=24",
        "eval.max_new_tokens=24",
        "eval.limit=6",
        "local.optim.max_steps=2",
    ]
    for k, name in enumerate(("slm-xs", "slm-s", "slm-xs")):
        small += [
            f"clients.{k}.model={local_checkpoints[name]}",
            f"clients.{k}.dtype=float32",
            f"clients.{k}.train_range=[{40 * k}, {40 * k + 40}]",
            f"clients.{k}.test_range=[{10 * k}, {10 * k + 10}]",
        ]
    cfg = load_config(ROOT / "configs" / "real-gsm8k.yaml", small)
    assert cfg.clients[0].lora is not None
    records = run(cfg, tmp_path / "run")
    assert [r["round"] for r in records] == [0, 1]
    r1 = records[1]
    assert r1["missed"] == {} and set(r1["slm_accuracy"]) == {"0", "1", "2"}
    # each SLM gets picks, unless the tiny LLM teaches none of P (the teachability mask)
    assert all(r1["selected"][k]["S"] >= 1 or r1["filter_mode"][k]["S"] == "masked" for k in "012")
    assert r1["client_domains"]["0"] == ["gsm8k"]
    # LoRA: a client's saved state holds the adapters only
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "run" / "clients" / "client_0" / "round_001.safetensors"))
    assert state and all("lora_" in name for name in state)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["completed_rounds"] == 1
