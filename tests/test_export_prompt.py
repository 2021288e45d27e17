"""An export says how to prompt it: loaded in plain transformers with its chat template, it
answers a question the run taught it; its README.md and `lada export`'s snippet do the same."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from lada.cli import main
from lada.config import RunConfig, to_dict
from lada.data.split import load_split, make_split
from lada.models import build_model, build_tokenizer
from lada.train.batching import encode_prompts
from lada.train.loop import OptimConfig
from lada.train.sft import sft
from lada.utils.model_state import save_trainable

SPLIT = {"num_clients": 2, "train_per_client": 4, "test_per_client": 2, "public_size": 4}


def _taught_run(run: Path, base: Path):
    """A run dir as `lada run` leaves it after round 1, whose client 0 learned its first
    training question by heart (a tiny model overfit on one fact)."""
    make_split(run / "data", seed=0, **SPLIT)
    fact = load_split(run / "data").clients[0].train[0]
    samples = load_split(run / "data").public + load_split(run / "data").clients[0].train
    tok = build_tokenizer((s.prompt() + s.target() for s in samples * 20), vocab_size=300)
    build_model("slm-xs", tok, seed=1).save_pretrained(base)
    tok.save_pretrained(base)
    cfg = to_dict(RunConfig())
    cfg["data"]["split"] = dict(SPLIT)
    cfg["filter"]["budget"] = 2
    cfg["clients"] = [{**cfg["clients"][0], "model": str(base), "device": "cpu"}] * 2
    cfg["server"] = {**cfg["server"], "model": str(base), "device": "cpu"}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    model = AutoModelForCausalLM.from_pretrained(base)
    optim = OptimConfig(lr=1e-2, max_steps=120, batch_size=1, warmup_steps=5, seed=0)
    sft(model, tok, [fact.prompt()], [fact.target()], optim)
    save_trainable(model, run / "clients" / "client_0" / "round_001.safetensors")
    (run / "state.json").write_text(json.dumps({"last_complete_round": 1}))
    return fact, tok


def test_an_export_answers_through_its_chat_template(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    run, out = tmp_path / "run", tmp_path / "export"
    fact, plain_tok = _taught_run(run, tmp_path / "base")
    assert main(["export", str(run), "--round", "1", "--client", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    question = fact.prompt().rstrip("\n")
    x = tok.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt"
    )
    # the template writes the run's own prompt, token for token
    assert x["input_ids"][0].tolist() == encode_prompts(plain_tok, [fact.prompt()])[0]
    reply = tok.decode(
        model.generate(**x, max_new_tokens=120, do_sample=False)[0, x["input_ids"].shape[1] :],
        skip_special_tokens=True,
    )
    assert f"Answer: {fact.answer}" in reply

    card = (out / "README.md").read_text()
    assert question in card and f"Expected answer: `{fact.answer}`" in card
    assert "a newline" in card and "apply_chat_template" in card

    # the three printed lines load the export and ask the question
    code = printed.split("README.md):\n\n", 1)[1]
    assert len(code.strip().splitlines()) == 3
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(code, {})
    assert f"Answer: {fact.answer}" in buf.getvalue()
