"""Tokenizer, model zoo and loading (local folders, LoRA, GGUF conversion)."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lada.accel.precision import autocast_dtype
from lada.models import (
    ZOO,
    LoraSettings,
    build_model,
    build_tokenizer,
    convert_gguf_to_hf,
    count_params,
    ensure_pad_token,
    load_causal_lm,
    resolve_device,
    resolve_dtype,
)
from lada.train.loop import OptimConfig
from lada.train.sft import sft

CORPUS = [
    f"Max has {i} cards. He buys {i * 7 % 13} more. How many now?\n"
    f"Step: {i}+{i * 7 % 13}={i + i * 7 % 13}\nAnswer: {i + i * 7 % 13}"
    for i in range(400)
]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def saved(tok, tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    model = build_model("slm-xs", tok, seed=3)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d, model


def _ids(tok, text: str) -> torch.Tensor:
    return torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])


# ---- tokenizer ----------------------------------------------------------------------------


def test_tokenizer_splits_digits_and_round_trips(tok):
    text = "Tom has 12345 apples, -7.25 left.\nAnswer: 9"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    for digit in "12345":
        assert digit in pieces
    assert not any(any(c.isdigit() for c in p) and len(p) > 1 for p in pieces)
    assert tok.decode(ids) == text
    assert tok.decode(tok("héllo wörld ✓")["input_ids"]) == "héllo wörld ✓"  # byte level


def test_tokenizer_special_tokens_deterministic_and_save_load(tok, tmp_path):
    assert [tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token] == [
        "<pad>",
        "<s>",
        "</s>",
        "<unk>",
    ]
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3
    assert build_tokenizer(CORPUS, vocab_size=300).get_vocab() == tok.get_vocab()
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "Max has 31 cards.\nAnswer: 4"
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert (again.pad_token_id, again.eos_token_id, again.bos_token_id) == (
        tok.pad_token_id,
        tok.eos_token_id,
        tok.bos_token_id,
    )


# ---- zoo --------------------------------------------------------------------------------


def test_zoo_param_counts_are_ordered(tok):
    order = ["slm-xs", "slm-s", "slm-m", "llm-xs", "llm-s", "llm"]  # the default LLM > SLMs
    assert set(order) <= set(ZOO)
    counts = [count_params(build_model(name, tok, seed=0)) for name in order]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert 0.1e6 <= counts[0] <= 0.25e6
    assert counts[-1] >= 2.5 * counts[2]
    assert all(ZOO[n].num_layers >= 3 for n in order)  # SLMs can compose chains (testbed.md)
    assert {ZOO[n].family for n in order} == {"llama", "qwen2"}


def test_build_model_is_seeded_and_ties_embeddings(tok):
    a, b, c = (build_model("slm-s", tok, seed=s) for s in (0, 0, 1))
    state_a, state_b, state_c = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not torch.equal(
        state_a["model.embed_tokens.weight"], state_c["model.embed_tokens.weight"]
    )
    assert a.get_output_embeddings().weight is a.get_input_embeddings().weight
    assert a.config.vocab_size == len(tok) and a.config.pad_token_id == tok.pad_token_id


@pytest.mark.parametrize("name", ["slm-xs", "slm-s"])
def test_zoo_save_reload_identical_logits(tok, tmp_path, name):
    model = build_model(name, tok, seed=1)
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = _ids(tok, CORPUS[5])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)


# ---- loading ----------------------------------------------------------------------------


def test_load_causal_lm_local_folder(saved, tok):
    d, model = saved
    loaded, loaded_tok = load_causal_lm(d, device="cpu")
    assert not loaded.training and loaded_tok.pad_token_id == tok.pad_token_id
    ids = _ids(tok, CORPUS[7])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    # bf16 on CPU: fp32 master weights + bf16 autocast (lada.accel.precision)
    half, _ = load_causal_lm(d, device="cpu", dtype="bfloat16")
    assert half.dtype == torch.float32 and autocast_dtype(half) == torch.bfloat16
    assert load_causal_lm(d, device="cpu", dtype="fp16")[0].dtype == torch.float16


def test_load_causal_lm_with_lora_trains_only_adapters(saved, tok):
    d, _ = saved
    model, _ = load_causal_lm(d, device="cpu", lora=LoraSettings(r=4, alpha=8))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert 0 < count_params(model, trainable_only=True) < count_params(model) / 5
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    stats = sft(
        model, tok, CORPUS[:8], CORPUS[8:16], OptimConfig(max_steps=2, batch_size=4, warmup_steps=0)
    )
    assert stats.steps == 2 and np.isfinite(stats.step_losses).all()
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in frozen.items())
    assert any(not torch.equal(after[n], v) for n, v in adapters.items())


def test_lora_initialisation_follows_the_seed_not_the_global_generator(saved):
    """peft draws lora_A from torch's global generator: a seed fixes the adapters whatever
    state that generator is in (runs of one config start alike in every process), different
    seeds give different adapters, and the global generator is left untouched."""
    d, _ = saved

    def adapters(seed, global_seed):
        torch.manual_seed(global_seed)
        model, _ = load_causal_lm(d, device="cpu", lora=LoraSettings(r=4, alpha=8), seed=seed)
        after = torch.rand(1)
        torch.manual_seed(global_seed)
        return {n: p.detach() for n, p in model.named_parameters() if "lora_A" in n}, after

    a, next_a = adapters(7, global_seed=1)
    b, _ = adapters(7, global_seed=2)
    c, _ = adapters(8, global_seed=1)
    assert a and all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)
    torch.manual_seed(1)
    assert torch.equal(next_a, torch.rand(1))  # loading consumed nothing of the global stream


def test_run_roles_start_from_seeded_adapters(saved):
    """The runner's loader seeds each role's adapters from the run's seed and the role: the
    same run seed and role give the same adapters whatever the global generator's state, other
    roles or seeds other adapters (the real config's runs differed from round 1 without it)."""
    from lada.config.schema import ClientConfig, RunConfig
    from lada.runner.setup import model_loader

    d, _ = saved
    mc = ClientConfig(model=str(d), lora=LoraSettings(r=4, alpha=8), device="cpu")

    def adapters(run_seed, role, global_seed):
        torch.manual_seed(global_seed)
        model, _ = model_loader(mc, RunConfig(seed=run_seed), None, role=role)()
        return [p.detach() for n, p in model.named_parameters() if "lora_A" in n]

    first = adapters(0, "client_0", global_seed=1)
    assert all(map(torch.equal, first, adapters(0, "client_0", global_seed=2)))
    assert not all(map(torch.equal, first, adapters(0, "client_1", global_seed=1)))
    assert not all(map(torch.equal, first, adapters(1, "client_0", global_seed=1)))


def test_missing_model_fails(tmp_path):
    with pytest.raises((OSError, ValueError)):
        load_causal_lm(tmp_path / "nope", device="cpu")


def test_ensure_pad_token_falls_back_to_eos(tok):
    no_pad = build_tokenizer(CORPUS[:50], vocab_size=280)
    no_pad.pad_token = None
    assert no_pad.pad_token_id is None
    ensure_pad_token(no_pad)
    assert no_pad.pad_token_id == no_pad.eos_token_id


def test_resolve_device_and_dtype():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype("float32") is torch.float32
    with pytest.raises(ValueError):
        resolve_dtype("float7")


# ---- GGUF ---------------------------------------------------------------------------------


def _write_tiny_llama_gguf(model, tok, path) -> None:
    """Export a tiny Llama as an f32 GGUF file the way llama.cpp's converter lays it out."""
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(len(tok))
    spec = json.loads(tok.backend_tokenizer.to_str())["model"]
    vocab = sorted(spec["vocab"], key=spec["vocab"].get)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(vocab)
    w.add_token_types([3 if t in tok.all_special_tokens else 1 for t in vocab])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in spec["merges"]])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)

    def permute(x: np.ndarray, heads: int) -> np.ndarray:
        return (
            x.reshape(heads, 2, x.shape[0] // heads // 2, *x.shape[1:])
            .swapaxes(1, 2)
            .reshape(x.shape)
        )

    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # tied
            continue
        array = tensor.numpy().astype(np.float32)
        if name.endswith("q_proj.weight"):
            array = permute(array, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            array = permute(array, cfg.num_key_value_heads)
        w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_load_and_convert_to_hf(saved, tok, tmp_path):
    pytest.importorskip("gguf")
    _, model = saved
    _write_tiny_llama_gguf(model, tok, tmp_path / "tiny.gguf")
    ids = _ids(tok, CORPUS[11])
    gguf_model, gguf_tok = load_causal_lm(tmp_path, gguf_file="tiny.gguf", device="cpu")
    assert gguf_tok(CORPUS[11], add_special_tokens=False)["input_ids"] == ids[0].tolist()
    with pytest.raises(Exception, match="(?i)gguf|serializ"):
        gguf_model.save_pretrained(tmp_path / "direct")
    out = convert_gguf_to_hf(tmp_path, "tiny.gguf", tmp_path / "hf")
    assert convert_gguf_to_hf(tmp_path, "tiny.gguf", out) == out  # cached: no second conversion
    hf_model, _ = load_causal_lm(out, device="cpu")
    with torch.no_grad():
        expected = model(ids).logits
        assert torch.allclose(gguf_model(ids).logits, expected, atol=1e-5)
        assert torch.allclose(hf_model(ids).logits, expected, atol=1e-5)
