"""`lada export` / `lada eval` on a run's checkpoints: round-trip with equal logits.

The run directory is built as `lada run` leaves it (config.yaml, state.json, the clients' and
the server's trained state files), with tiny local base models, so no run is needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from lada.cli import main
from lada.config import RunConfig, to_dict
from lada.export import export, parse_run_checkpoint
from lada.models import build_model, build_tokenizer
from lada.models.loading import LoraSettings, apply_lora
from lada.utils.model_state import save_trainable

CORPUS = [
    f"Q: what is {a} plus {b}? A: {a} + {b} = {a + b}. #### {a + b}"
    for a in range(20)
    for b in range(5)
]


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    tok = build_tokenizer(CORPUS, vocab_size=300)
    out = {}
    for name, spec in (("slm", "slm-xs"), ("llm", "slm-s")):
        d = tmp_path_factory.mktemp(name)
        build_model(spec, tok, seed=1).save_pretrained(d)
        tok.save_pretrained(d)
        out[name] = d
    return out


def _perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _logits(model: torch.nn.Module, tok) -> torch.Tensor:
    ids = tok("Q: what is 3 plus 4? A:", return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


def make_run(tmp: Path, bases: dict[str, Path], lora: bool = False) -> dict[str, torch.nn.Module]:
    """A 2-round run: client 0 saved rounds 1 and 2, client 1 only round 1 (it missed round 2);
    the server saved both rounds. Returns the trained models at round 2 by role."""
    cfg = to_dict(RunConfig())
    cfg["server"]["model"] = str(bases["llm"])
    lora_cfg = to_dict(LoraSettings(r=2, alpha=4, target_modules=["q_proj", "v_proj"]))
    cfg["clients"] = [
        {**to_dict(RunConfig().clients[0]), "model": str(bases["slm"]), "device": "cpu"}
        | ({"lora": lora_cfg} if lora else {})
        for _ in range(2)
    ]
    cfg["server"]["device"] = "cpu"
    cfg["rounds"] = 2
    tmp.mkdir()
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (tmp / "state.json").write_text(json.dumps({"last_complete_round": 2}))
    trained = {}
    for role, base, rounds in (
        ("client_0", "slm", (1, 2)),
        ("client_1", "slm", (1,)),
        ("server", "llm", (1, 2)),
    ):
        model = AutoModelForCausalLM.from_pretrained(bases[base]).eval()
        if lora and role != "server":
            model = apply_lora(model, LoraSettings(**lora_cfg)).eval()
        for t in rounds:
            _perturbed(model, seed=10 * t + len(role))
            if role == "server":
                save_trainable(model, tmp / "checkpoints" / f"round_{t:03d}" / "llm.safetensors")
            else:
                save_trainable(model, tmp / "clients" / role / f"round_{t:03d}.safetensors")
        trained[role] = model
    return trained


def test_export_round_trip_logits_equal(tmp_path: Path, bases: dict[str, Path]) -> None:
    trained = make_run(tmp_path / "run", bases)
    tok = AutoTokenizer.from_pretrained(bases["slm"])
    for client, role in ((0, "client_0"), (None, "server")):
        out = tmp_path / f"out-{role}"
        info = export(tmp_path / "run", 2, client, out)
        loaded = AutoModelForCausalLM.from_pretrained(out)
        assert torch.equal(_logits(loaded, tok), _logits(trained[role], tok))
        assert AutoTokenizer.from_pretrained(out)("12 + 3").input_ids == tok("12 + 3").input_ids
        assert json.loads((out / "lada_export.json").read_text())["round"] == 2
        assert "AutoModelForCausalLM" in info["format"]
    # client 1 missed round 2: its state of round 1 is what it holds at the end of round 2
    info = export(tmp_path / "run", 2, 1, tmp_path / "out-c1")
    assert info["checkpoint"].endswith("round_001.safetensors") and "missed" in info["note"]
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out-c1")
    assert torch.equal(_logits(loaded, tok), _logits(trained["client_1"], tok))
    # round 0 is the base model
    export(tmp_path / "run", 0, 0, tmp_path / "out-base")
    base = AutoModelForCausalLM.from_pretrained(bases["slm"])
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out-base")
    assert torch.equal(_logits(loaded, tok), _logits(base, tok))


def test_export_lora_adapter_and_merged(tmp_path: Path, bases: dict[str, Path]) -> None:
    from peft import PeftModel

    trained = make_run(tmp_path / "run", bases, lora=True)
    tok = AutoTokenizer.from_pretrained(bases["slm"])
    export(tmp_path / "run", 2, 0, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(bases["slm"])
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    assert torch.equal(_logits(loaded, tok), _logits(trained["client_0"], tok))
    export(tmp_path / "run", 2, 0, tmp_path / "merged", merge=True)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert torch.allclose(_logits(merged, tok), _logits(trained["client_0"], tok), atol=1e-5)


def test_export_errors_are_clear(tmp_path: Path, bases: dict[str, Path]) -> None:
    make_run(tmp_path / "run", bases)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert (
        main(
            [
                "export",
                str(tmp_path / "run"),
                "--round",
                "2",
                "--client",
                "0",
                "--out",
                str(tmp_path / "full"),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "export",
                str(tmp_path / "run"),
                "--round",
                "7",
                "--server",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "export",
                str(tmp_path / "run"),
                "--round",
                "1",
                "--client",
                "5",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "o").exists()


def test_eval_accepts_run_checkpoints(tmp_path: Path, bases: dict[str, Path], capsys) -> None:
    make_run(tmp_path / "run", bases)
    run = tmp_path / "run"
    assert parse_run_checkpoint(run / "clients" / "client_0" / "round_002.safetensors") == (
        run,
        2,
        0,
    )
    assert parse_run_checkpoint(run / "checkpoints" / "round_001") == (run, 1, None)
    assert parse_run_checkpoint(run / "checkpoints" / "round_001" / "llm.safetensors") == (
        run,
        1,
        None,
    )
    assert parse_run_checkpoint(tmp_path / "elsewhere" / "round_001.safetensors") is None
    data = tmp_path / "test.jsonl"
    rows = [
        {
            "id": f"t{i}",
            "domain": "math",
            "question": f"what is {i} plus 1?",
            "answer": str(i + 1),
            "answer_type": "number",
            "steps": [],
        }
        for i in range(3)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for model in (
        run / "clients" / "client_0" / "round_002.safetensors",
        run / "checkpoints" / "round_002",
    ):
        assert main(["eval", "--model", str(model), "--data", str(data)]) == 0
        assert "accuracy:" in capsys.readouterr().out
    export(run, 2, 0, tmp_path / "exported")
    assert main(["eval", "--model", str(tmp_path / "exported"), "--data", str(data)]) == 0
