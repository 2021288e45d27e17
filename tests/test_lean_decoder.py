"""The lean decoder (lada.accel.lean_decoder) against the model's own forward: logits of the
prefill and of every step, greedy tokens, grouped-query heads, LoRA folded in, bf16 compute,
and the models it refuses (tiny local models only)."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from lada.accel.cast_weights import cast_linear_copy
from lada.accel.lean_decoder import LeanDecoder, lean_decoder_unsupported
from lada.accel.packed_linear import packing_unsupported
from lada.eval.generate import choose_decoder, greedy_decode
from lada.models import build_model, build_tokenizer
from lada.models.zoo import ModelSpec
from lada.train.batching import encode_prompts, left_pad

PROMPTS = [f"Double {a}\n" for a in range(7)] + ["Max has 3 cards. He buys 4 more.\n", "Hi\n"]
# grouped-query attention (2 query heads per key head), both families the lean decoder knows
GQA = {
    "llama": ModelSpec("gqa-llama", "llama", 64, 2, 4, 2, 160, tie_word_embeddings=False),
    "qwen2": ModelSpec("gqa-qwen2", "qwen2", 64, 2, 4, 2, 160),
}


@pytest.fixture(scope="module")
def tok():
    corpus = PROMPTS * 3 + [f"Step: {a}+{a}={2 * a}\nAnswer: {2 * a}" for a in range(30)]
    return build_tokenizer(corpus, vocab_size=300)


def _with_lora(model):
    """``model`` with non-zero LoRA adapters on every projection (peft)."""
    from lada.models.loading import LoraSettings, apply_lora

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=targets)
    with torch.random.fork_rng():  # peft draws lora_A from the global RNG: seeded here, so the
        torch.manual_seed(0)  # weights are the same in any test order
        model = apply_lora(model, lora)
    gen = torch.Generator().manual_seed(0)  # lora_B: not the global RNG either
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=gen)
    return model.eval()


def _batch(tok):
    batch = left_pad(encode_prompts(tok, PROMPTS), tok.pad_token_id)
    mask = batch["attention_mask"]
    return batch["input_ids"], mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _reference_logits(model, ids, mask, positions, new_tokens):
    """Last-position logits of the model's own forward (full recompute, no cache) for the
    prompts and then for each of ``new_tokens`` appended one at a time."""
    out = []
    with torch.no_grad():
        for n in range(new_tokens.shape[1] + 1):
            full = torch.cat([ids, new_tokens[:, :n]], 1)
            m = torch.cat([mask, mask.new_ones(len(ids), n)], 1)
            p = torch.cat([positions, positions[:, -1:] + torch.arange(1, n + 1)], 1)
            out.append(model(input_ids=full, attention_mask=m, position_ids=p).logits[:, -1])
    return out


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("lora", [False, True])
def test_logits_equal_the_models_forward(tok, family, lora):
    model = build_model(GQA[family], tok, seed=1)
    model = _with_lora(model) if lora else model
    ids, mask, positions = _batch(tok)
    new = torch.randint(5, 200, (len(ids), 4), generator=torch.Generator().manual_seed(0))
    expected = _reference_logits(model, ids, mask, positions, new)

    dec = LeanDecoder(model)
    got = [dec.prefill(ids, mask, positions, ids.shape[1] + 4)]
    for j in range(4):
        got.append(dec.step(new[:, j], positions[:, -1] + j + 1))
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


def test_dropping_rows_keeps_the_others_exact(tok):
    model = build_model(GQA["llama"], tok, seed=2)
    ids, mask, positions = _batch(tok)
    new = torch.randint(5, 200, (len(ids), 3), generator=torch.Generator().manual_seed(1))
    expected = _reference_logits(model, ids, mask, positions, new)
    dec = LeanDecoder(model)
    dec.prefill(ids, mask, positions, ids.shape[1] + 3)
    dec.step(new[:, 0], positions[:, -1] + 1)
    rows = torch.tensor([0, 3, 8])
    dec.keep(rows)
    got = dec.step(new[rows, 1], positions[rows, -1] + 2)
    torch.testing.assert_close(got, expected[2][rows], atol=1e-4, rtol=1e-4)


def test_a_rows_logits_do_not_depend_on_the_others_padding(tok):
    """The prefill runs only real tokens through the projections (packed, left padding
    skipped): each row's prefill and next-step logits equal its prompt's run alone."""
    model = _with_lora(build_model(GQA["qwen2"], tok, seed=5))
    ids, mask, positions = _batch(tok)
    assert not mask.bool().all()  # the batch has padding
    dec = LeanDecoder(model)
    rows, project = [], dec._project  # how many rows each projection multiplies
    dec._project = lambda x, proj: (rows.append(x.numel() // x.shape[-1]), project(x, proj))[1]
    batched = dec.prefill(ids, mask, positions, ids.shape[1] + 1)
    assert set(rows) == {int(mask.sum()), len(ids)}  # real tokens only; the head: last ones
    nxt = batched.argmax(-1)
    stepped = dec.step(nxt, positions[:, -1] + 1)
    for r, prompt in enumerate(encode_prompts(tok, PROMPTS)):
        n = len(prompt)
        one = LeanDecoder(model)
        alone = one.prefill(torch.tensor([prompt]), torch.ones(1, n), torch.arange(n)[None], n + 1)
        torch.testing.assert_close(batched[r], alone[0], atol=1e-5, rtol=1e-5)
        step = one.step(nxt[r : r + 1], torch.tensor([n]))
        torch.testing.assert_close(stepped[r], step[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_greedy_tokens_equal_the_models_own_decoding(tok, family):
    model = _with_lora(build_model(GQA[family], tok, seed=4))
    encoded = encode_prompts(tok, PROMPTS)
    kw = dict(max_new_tokens=12, batch_size=4, eos_ids={tok.eos_token_id}, pad_id=tok.pad_token_id)
    assert choose_decoder(model) == "lean"
    lean = greedy_decode(model, encoded, decoder="lean", **kw)
    own = greedy_decode(model, encoded, decoder="hf", **kw)
    assert lean == own
    assert sum(map(len, lean)) > len(PROMPTS)  # it generated something


def test_bf16_compute_matches_the_cast_copy_forward(tok):
    """With a bf16 compute dtype the lean decoder computes what the model's forward computes
    on the bf16 cast copy of its linear layers (lada.accel.cast_weights), up to round-off."""
    model = _with_lora(build_model(GQA["qwen2"], tok, seed=5))
    ids, mask, positions = _batch(tok)
    with cast_linear_copy(model, torch.bfloat16), torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
    got = LeanDecoder(model, torch.bfloat16).prefill(ids, mask, positions, ids.shape[1] + 1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected.float(), atol=2e-2, rtol=2e-2)
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.8


def test_models_it_cannot_run_are_named_and_refused(tok, caplog):
    from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2))
    assert "gpt2" in lean_decoder_unsupported(gpt2)
    sliding = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=64,
            use_sliding_window=True,
            sliding_window=8,
            max_window_layers=0,
        )
    )
    assert "sliding" in lean_decoder_unsupported(sliding)
    with pytest.raises(ValueError, match="cannot run this model: model type 'gpt2'"):
        LeanDecoder(gpt2)
    with pytest.raises(ValueError, match="decoder='lean' cannot run this model"):
        choose_decoder(gpt2, "lean")
    with pytest.raises(ValueError, match="expected one of auto, lean, hf"):
        choose_decoder(gpt2, "fast")
    from lada.utils.log_once import forget

    forget()
    with caplog.at_level(logging.INFO, logger="lada.eval.generate"):
        assert choose_decoder(gpt2, "auto") == "hf"
    assert "lean decoder: model type 'gpt2'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lada.eval.generate"):
        assert choose_decoder(gpt2, "auto") == "hf"
    assert "lean decoder" not in caplog.text  # said once per process, not at every call


def test_dora_adapters_are_not_folded(tok):
    from peft import LoraConfig, get_peft_model

    model = build_model(GQA["llama"], tok, seed=6)
    dora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], use_dora=True))
    assert "q_proj" in lean_decoder_unsupported(dora)


def test_a_shared_prefix_computed_once_gives_the_same_logits(tok):
    from lada.eval.generate import _shared_prefix

    model = _with_lora(build_model(GQA["llama"], tok, seed=7))
    system = encode_prompts(tok, ["You are a careful solver of word problems.\n"])[0]
    encoded = [system + ids for ids in encode_prompts(tok, PROMPTS)]
    shared = _shared_prefix(encoded)
    assert shared >= len(system)
    full = left_pad(encoded, tok.pad_token_id)
    mask = full["attention_mask"]
    expected = LeanDecoder(model).prefill(
        full["input_ids"], mask, (mask.cumsum(-1) - 1).clamp(min=0), mask.shape[1] + 2
    )
    rest = left_pad([ids[shared:] for ids in encoded], tok.pad_token_id)
    rmask = rest["attention_mask"]
    positions = (rmask.cumsum(-1) - 1).clamp(min=0) + shared
    dec = LeanDecoder(model)
    got = dec.prefill(
        rest["input_ids"],
        rmask,
        positions,
        shared + rmask.shape[1] + 2,
        prefix=torch.tensor(encoded[0][:shared]),
    )
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    nxt = got.argmax(-1)
    step = dec.step(nxt, positions[:, -1] + 1)
    reference = _reference_logits(
        model, full["input_ids"], mask, (mask.cumsum(-1) - 1).clamp(min=0), nxt[:, None]
    )[1]
    torch.testing.assert_close(step, reference, atol=1e-4, rtol=1e-4)


def test_shared_prefix_leaves_every_prompt_a_token():
    from lada.eval.generate import _shared_prefix

    assert _shared_prefix([[1, 2, 3]]) == 0
    assert _shared_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert _shared_prefix([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert _shared_prefix([[7, 2], [1, 2]]) == 0


def test_the_runtime_generator_picks_what_generates(tok, tmp_path, monkeypatch):
    from lada.accel import generator, lean_decoder, switch, using
    from lada.accel.settings import RuntimeConfig
    from lada.models.loading import load_causal_lm

    build_model(GQA["llama"], tok, seed=8).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model, tok2 = load_causal_lm(tmp_path, device="cpu")
    assert not [a for a in vars(model) if a.startswith("lada_")]  # nothing patched onto it
    with pytest.raises(ValueError, match="expected one of auto, lean, hf"):
        switch.configure(RuntimeConfig(generator="fast"))  # type: ignore[arg-type]

    def refuse(*args, **kwargs):
        raise RuntimeError("the lean decoder ran")

    monkeypatch.setattr(lean_decoder.LeanDecoder, "__init__", refuse)
    with using(generator="hf"):
        gen = generator(model, tok2)
        assert gen.engine == "hf"
        assert len(gen.paths(PROMPTS[:2], max_new_tokens=3)) == 2  # the model's own forward
    with using(accel="off"):  # auto is the model's own forward with the speed path off
        assert generator(model, tok2).engine == "hf"
        with pytest.raises(ValueError, match="needs runtime.accel torch or native"):
            choose_decoder(model, "lean")
    gen = generator(model, tok2)
    assert gen.engine == "lean"
    with pytest.raises(RuntimeError, match="the lean decoder ran"):
        gen.paths(PROMPTS[:2], max_new_tokens=3)


@pytest.mark.skipif(
    packing_unsupported(torch.bfloat16) is not None,
    reason="packed bf16 linear not available on this CPU",
)
def test_packed_bf16_weights_give_the_plain_weights_logits(tok):
    """Weights packed once for oneDNN (lada.accel.packed_linear) change the speed, not the
    numbers: prefill, steps and dropped rows against the same decoder on plain weights."""
    model = _with_lora(build_model(GQA["llama"], tok, seed=3))
    ids, mask, positions = _batch(tok)
    new = torch.randint(5, 200, (len(ids), 3), generator=torch.Generator().manual_seed(1))
    runs = []
    for pack in (True, False):
        dec = LeanDecoder(model, torch.bfloat16, pack=pack)
        assert dec.pack is pack and (dec.head.packed is not None) is pack
        logits = [dec.prefill(ids, mask, positions, ids.shape[1] + 3)]
        logits.append(dec.step(new[:, 0], positions[:, -1] + 1))
        dec.keep(torch.tensor([0, 2, 5]))
        logits.append(dec.step(new[[0, 2, 5], 1], positions[[0, 2, 5], -1] + 2))
        runs.append(logits)
    for packed, plain in zip(*runs, strict=True):
        torch.testing.assert_close(packed, plain, atol=1e-4, rtol=1e-4)


def test_packing_demanded_on_fp32_weights_is_refused(tok):
    model = build_model(GQA["qwen2"], tok, seed=3)
    with pytest.raises(ValueError, match="cannot pack the lean decoder weights"):
        LeanDecoder(model, pack=True)
    assert LeanDecoder(model).pack is False  # auto: fp32 weights stay plain


def test_folded_weights_equal_peft_merge_with_two_adapters_and_row_blocks(tok, monkeypatch):
    """The decoder's weights are base + every active adapter's ``scaling * B @ A``, also when
    the sum runs in several row blocks and two adapters are active (peft's own merge as the
    reference)."""
    from peft import LoraConfig

    import lada.accel.cast_weights as cw

    model = _with_lora(build_model(GQA["llama"], tok, seed=5))
    second = LoraConfig(r=2, lora_alpha=6, target_modules=["q_proj", "gate_proj"])
    with torch.random.fork_rng(), torch.no_grad():  # the same adapters in any test order
        torch.manual_seed(1)
        model.add_adapter("second", second)
        for name, p in model.named_parameters():
            if "lora_B.second" in name:
                p.normal_(0, 0.05)
    model.base_model.set_adapter(["default", "second"])
    monkeypatch.setattr(cw, "_BLOCK_BYTES", 4 * 64 * 3)  # three rows of 64 inputs a block
    layer = model.base_model.model.model.layers[0]
    assert len(layer.self_attn.q_proj.active_adapters) == 2
    for proj in (layer.self_attn.q_proj, layer.self_attn.v_proj, layer.mlp.gate_proj):
        active = [a for a in proj.active_adapters if a in proj.lora_A]
        want = proj.base_layer.weight + sum(proj.get_delta_weight(a) for a in active)
        got = torch.empty_like(want)
        assert cw.write_effective_weight(proj, got) is proj.base_layer.bias
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        half = torch.empty_like(want, dtype=torch.bfloat16)
        cw.write_effective_weight(proj, half)
        assert torch.equal(half, got.to(torch.bfloat16))  # summed in fp32, cast once
