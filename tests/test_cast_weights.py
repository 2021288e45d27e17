"""Inference weights and KV cache of the decode loop: the cast copy of the linear layers (LoRA
folded in, model untouched) and the preallocated cache (tiny local models only)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

from lada.accel.cast_swiglu import CastSwiGLU
from lada.accel.cast_weights import (
    CastLinear,
    CastLoraLinear,
    InputCast,
    PreallocatedLayer,
    cast_linear_copy,
    preallocated_cache,
)
from lada.accel.precision import casts_cover, set_autocast
from lada.eval.generate import generate_paths, greedy_decode, hf_generate_paths
from lada.models import build_model, build_tokenizer
from lada.train.batching import encode_prompts

PROMPTS = [f"Double {a}\n" for a in range(9)] + ["Max has 3 cards. He buys 4 more.\n", "Hi\n"]


@pytest.fixture(scope="module")
def tok():
    corpus = PROMPTS * 3 + [f"Step: {a}+{a}={2 * a}\nAnswer: {2 * a}" for a in range(30)]
    return build_tokenizer(corpus, vocab_size=300)


@pytest.fixture(scope="module")
def lora_model(tok, tmp_path_factory):
    """A tiny Llama with non-zero LoRA adapters on every projection."""
    from lada.models.loading import LoraSettings, load_causal_lm

    path: Path = tmp_path_factory.mktemp("tiny")
    build_model("slm-xs", tok, seed=3).save_pretrained(path)
    tok.save_pretrained(path)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=targets)
    # peft draws lora_A from the global RNG: seeded, so the weights do not depend on test order
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)
        model, tok2 = load_causal_lm(path, lora=lora, device="cpu")
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model, tok2


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_cast_copy_in_fp32_equals_the_lora_model_and_restores_it(lora_model):
    model, _ = lora_model
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    params = {n: (p, p.detach().clone()) for n, p in model.named_parameters()}
    reference = _logits(model, ids)
    with cast_linear_copy(model, torch.float32):
        swapped = [m for m in model.modules() if isinstance(m, CastLinear)]
        copy = _logits(model, ids)
    # every projection (LoRA folded in) and the head
    assert len(swapped) == 7 * model.config.num_hidden_layers + 1
    torch.testing.assert_close(copy, reference, atol=1e-5, rtol=1e-5)
    assert not any(isinstance(m, CastLinear) for m in model.modules())
    for name, p in model.named_parameters():  # the same parameters, bit for bit
        assert p is params[name][0] and torch.equal(p, params[name][1]), name
    torch.testing.assert_close(_logits(model, ids), reference, atol=0, rtol=0)


def test_cast_copy_in_bf16_stays_close_and_keeps_fp32_activations(lora_model):
    model, _ = lora_model
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    reference = _logits(model, ids)
    with cast_linear_copy(model, torch.bfloat16):
        copy = _logits(model, ids)
        head = model.get_output_embeddings()
        assert isinstance(head, CastLinear) and head.weight.dtype == torch.bfloat16
    assert copy.dtype == torch.float32  # the residual stream and the logits stay fp32
    assert (copy - reference).abs().max() < 0.05 * reference.abs().max()


def test_bf16_copy_decode_equals_generate_with_the_same_weights(lora_model):
    """A model that autocasts to bf16 generates with the bf16 copy: token for token what
    model.generate gives with the same bf16 copy in place (greedy; the comparison is in the
    same dtype, since bf16 and fp32 greedy paths may differ where two tokens nearly tie)."""
    model, tok = lora_model
    set_autocast(model, torch.bfloat16)
    try:
        ours = generate_paths(
            model, tok, PROMPTS, max_new_tokens=16, batch_size=4, stop_at_answer=False
        )
        with cast_linear_copy(model, torch.bfloat16):
            reference = hf_generate_paths(model, tok, PROMPTS, max_new_tokens=16, batch_size=4)
    finally:
        set_autocast(model, None)
    assert ours == reference
    assert not any(isinstance(m, CastLinear) for m in model.modules())


def test_preallocated_cache_equals_generate_across_capacity_and_dropped_rows(lora_model):
    model, tok = lora_model
    reference = hf_generate_paths(model, tok, PROMPTS, max_new_tokens=12, batch_size=16)
    ids = greedy_decode(
        model,
        encode_prompts(tok, PROMPTS),
        max_new_tokens=12,
        batch_size=16,
        eos_ids={tok.eos_token_id},
        pad_id=tok.pad_token_id,
    )
    assert tok.batch_decode(ids, skip_special_tokens=True) == reference


def test_preallocated_layer_grows_and_selects_rows():
    layer = PreallocatedLayer(capacity=3)
    k = torch.arange(2 * 1 * 2 * 4, dtype=torch.float32).view(2, 1, 2, 4)
    keys, values = layer.update(k, -k)
    assert keys.shape == (2, 1, 2, 4) and layer.get_seq_length() == 2
    step = torch.full((2, 1, 1, 4), 7.0)
    layer.update(step, step)
    keys, values = layer.update(step + 1, step + 1)  # past the capacity: grows
    assert keys.shape == (2, 1, 4, 4) and torch.equal(keys[:, :, :2], k)
    assert torch.equal(keys[:, :, 3], torch.full((2, 1, 4), 8.0))
    layer.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys, keys[1:]) and torch.equal(layer.values[:, :, :2], -k[1:])


def test_preallocated_cache_replaces_full_attention_layers_only(lora_model):
    model, _ = lora_model
    cache = preallocated_cache(model, 32)
    assert len(cache.layers) == model.config.num_hidden_layers
    assert all(isinstance(layer, PreallocatedLayer) for layer in cache.layers)


def _lora_grads(model, ids):
    model.zero_grad(set_to_none=True)
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_training_copy_keeps_adapters_trainable_with_their_names_and_gradients(lora_model):
    """Without folding, each LoRA layer becomes a CastLoraLinear over a copy of its frozen base
    weight and the head a CastLinear; the adapters are the model's own parameters under the
    same names (an optimiser built inside finds them) and, with an fp32 copy, get the model's
    own gradients."""
    model, _ = lora_model
    ids = torch.tensor([[1, 5, 9, 14, 3, 7, 2, 8]])
    reference = _lora_grads(model, ids)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    with cast_linear_copy(model, torch.float32, fold_lora=False):
        loras = [n for n, m in model.named_modules() if isinstance(m, CastLoraLinear)]
        plain = [n for n, m in model.named_modules() if type(m) is CastLinear]
        assert len(loras) == 7 * model.config.num_hidden_layers
        assert plain == ["base_model.model.lm_head"]
        assert [n for n, p in model.named_parameters() if p.requires_grad] == names
        grads = _lora_grads(model, ids)
    assert grads.keys() == reference.keys() and all("lora_" in n for n in grads)
    for name, g in grads.items():
        torch.testing.assert_close(g, reference[name], atol=1e-6, rtol=1e-5)
    assert not any(isinstance(m, CastLinear) for m in model.modules())
    model.zero_grad(set_to_none=True)


def test_training_copy_casts_each_shared_input_once_and_drops_autocast(lora_model):
    """q/k/v read one input and gate/up another: in a bf16 training copy each distinct input
    is cast once per forward pass (4 per decoder layer + the head), not once per projection
    and adapter. Every matmul then computes in bf16 by itself, so LaDa's forward passes run
    without autocast (attention stays fp32); adapter gradients stay close to those of bf16
    autocast on peft's own layers."""
    from lada.accel.precision import autocast_for

    model, _ = lora_model
    ids = torch.tensor([[1, 5, 9, 14, 3, 7, 2, 8], [2, 4, 6, 8, 10, 12, 14, 16]])
    set_autocast(model, torch.bfloat16)
    try:
        with autocast_for(model):
            assert torch.is_autocast_enabled("cpu")
            reference = _lora_grads(model, ids)
        with cast_linear_copy(model, torch.bfloat16, fold_lora=False):
            memo = next(m for m in model.modules() if isinstance(m, CastLoraLinear)).input_cast
            with autocast_for(model):
                assert not torch.is_autocast_enabled("cpu")
                grads = _lora_grads(model, ids)
            # per layer: q/k/v's input, o's, and gate/up's unless the MLP casts its own input
            # (lada.accel.cast_swiglu, where the C kernels run)
            own = sum(isinstance(m, CastSwiGLU) for m in model.modules())
            layers = model.config.num_hidden_layers
            assert memo.casts == 4 * layers + 1 - 2 * own
        assert not casts_cover(model)
    finally:
        set_autocast(model, None)
    for name, g in grads.items():
        scale = reference[name].abs().max()
        assert (g - reference[name]).abs().max() <= 0.05 * scale, name
    model.zero_grad(set_to_none=True)


def test_input_cast_misses_on_a_new_version_or_grad_mode():
    memo = InputCast()
    x = torch.randn(3, 4)
    first = memo(x, torch.bfloat16)
    assert memo(x, torch.bfloat16) is first and memo.casts == 1
    x.mul_(2)  # in place: the old cast is stale
    assert torch.equal(memo(x, torch.bfloat16), x.to(torch.bfloat16)) and memo.casts == 2
    with torch.no_grad():
        assert memo(x, torch.bfloat16) is not first and memo.casts == 3
    assert memo(x, torch.float32) is x  # already in the dtype: no cast


def test_sft_with_bf16_autocast_trains_adapters_through_the_frozen_copy(lora_model, tok):
    """A model that autocasts to bf16 trains with its frozen layers cast once (lada.train.loop):
    the adapters learn, the base weights and modules come back untouched."""
    from lada.train.loop import OptimConfig
    from lada.train.sft import sft

    model, tok2 = lora_model
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    set_autocast(model, torch.bfloat16)
    try:
        stats = sft(
            model,
            tok2,
            PROMPTS[:8] * 4,
            [f"Answer: {2 * a}" for a in range(8)] * 4,
            OptimConfig(lr=1e-2, batch_size=8, epochs=3, warmup_steps=0),
        )
    finally:
        set_autocast(model, None)
    assert stats.step_losses[-1] < stats.step_losses[0]
    assert not any(isinstance(m, CastLinear) for m in model.modules())
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in base.items())
    assert any(not torch.equal(params[n], v) for n, v in lora.items())
    with torch.no_grad():  # leave the shared fixture as the other tests expect it
        for n, v in lora.items():
            params[n].copy_(v)
