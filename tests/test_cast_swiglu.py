"""CastSwiGLU: a SwiGLU MLP from one bf16 copy of its weights, with the C activation kernels
forward and backward, against the path it replaces (bf16 matmuls, fp32 element-wise ops)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import torch
from torch import nn

from lada.accel import decode_kernels as K
from lada.accel import switch
from lada.accel.cast_swiglu import CastSwiGLU, SiluMul, is_swiglu_mlp
from lada.accel.cast_weights import CastLinear, cast_linear_copy, frozen_cast_copy
from lada.accel.precision import casts_cover, set_autocast
from lada.accel.settings import RuntimeConfig
from lada.models import build_model, build_tokenizer

REASON = K.kernels_unsupported("cpu", torch.float32, torch.bfloat16)
needs_kernels = pytest.mark.skipif(REASON is not None, reason=f"no C kernels here: {REASON}")
PROMPTS = [f"Double {a}\n" for a in range(8)]
TARGETS = [f"Answer: {2 * a}" for a in range(8)]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@needs_kernels
@pytest.mark.parametrize("shape", [(5, 2 * 24), (2, 3, 2 * 1536)])  # tiny; a real model's rows
def test_silu_mul_kernels_forward_and_backward_match_fp32_autograd(shape):
    gate_up = (torch.randn(*shape, generator=_gen(0)) * 3).bfloat16()
    gate_up[..., 0] = -100.0  # exp overflows in sigmoid(-x): the gradient is 0, not NaN
    leaf = gate_up.clone().requires_grad_(True)
    out = SiluMul.apply(leaf)
    ref_leaf = gate_up.float().requires_grad_(True)
    gate, up = ref_leaf.chunk(2, dim=-1)
    ref = nn.functional.silu(gate) * up
    # one rounding of the same fp32 value (exp may differ in its last bit: a tie can flip)
    assert ((out.float() - ref).abs() <= 2.0**-8 * ref.abs() + 1e-30).all()
    assert (out == ref.bfloat16()).float().mean() > 0.99
    grad = torch.randn(*out.shape, generator=_gen(1)).bfloat16()
    out.backward(grad)
    ref.backward(grad.float())
    want = ref_leaf.grad.bfloat16()
    assert torch.isfinite(leaf.grad.float()).all()
    assert ((leaf.grad.float() - want.float()).abs() <= 2.0**-7 * want.float().abs() + 1e-30).all()
    assert (leaf.grad == want).float().mean() > 0.99


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    tok = build_tokenizer([p + t for p, t in zip(PROMPTS, TARGETS, strict=True)] * 3, 300)
    path: Path = tmp_path_factory.mktemp("tiny")
    build_model("slm-xs", tok, seed=3).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _load(path, targets, dropout=0.0):
    from lada.models.loading import LoraSettings, load_causal_lm

    lora = LoraSettings(r=4, alpha=8, dropout=dropout, target_modules=targets)
    with torch.random.fork_rng():  # peft draws lora_A from the global RNG: fix it here, so
        torch.manual_seed(0)  # that a test does not depend on the tests run before it
        model, tok = load_causal_lm(path, lora=lora, device="cpu")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=_gen(2))
    return model, tok


IDS = torch.tensor([[1, 5, 9, 14, 3, 7, 2, 8], [2, 4, 6, 8, 10, 12, 14, 16]])


def _loss_and_grads(model):
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=IDS, labels=IDS).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.item(), grads


@needs_kernels
@pytest.mark.parametrize(
    "targets",
    [["q_proj", "v_proj"], ["q_proj", "gate_proj", "down_proj"]],
    ids=["frozen MLP", "LoRA in the MLP"],
)
def test_training_copy_fuses_swiglu_mlps_close_to_the_path_it_replaces(llama, monkeypatch, targets):
    """Each MLP becomes one CastSwiGLU in the training copy (and is restored after), LoRA
    adapters inside it trainable under their own names; loss and adapter gradients agree with
    the per-layer copy (bf16 matmuls, fp32 element-wise ops) to bf16 round-off."""
    model, _ = _load(llama, targets)
    mlps = [m for m in model.modules() if type(m).__name__ == "LlamaMLP"]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert mlps and all(is_swiglu_mlp(m, lora_ok=True) for m in mlps)
    with cast_linear_copy(model, torch.bfloat16, fold_lora=False):
        assert len([m for m in model.modules() if isinstance(m, CastSwiGLU)]) == len(mlps)
        assert [n for n, p in model.named_parameters() if p.requires_grad] == names
        assert casts_cover(model)  # no autocast needed: every matmul is a copy
        loss, grads = _loss_and_grads(model)
    assert [m for m in model.modules() if type(m).__name__ == "LlamaMLP"] == mlps  # restored
    assert sorted(grads) == sorted(names)
    monkeypatch.setattr(switch, "_current", RuntimeConfig(accel="torch"))  # no C kernels
    with cast_linear_copy(model, torch.bfloat16, fold_lora=False):
        assert not any(isinstance(m, CastSwiGLU) for m in model.modules())
        ref_loss, ref = _loss_and_grads(model)
    assert abs(loss - ref_loss) < 1e-2 * abs(ref_loss)
    for name, g in grads.items():
        assert (g - ref[name]).abs().max() <= 0.03 * ref[name].abs().max(), name


@needs_kernels
def test_dropout_swap_reaches_the_adapters_inside_a_fused_mlp(llama):
    from lada.accel.lora_dropout import CpuDropout, cpu_lora_dropout

    model, _ = _load(llama, ["q_proj", "up_proj", "down_proj"], dropout=0.1)
    layers = model.config.num_hidden_layers
    with cast_linear_copy(model, torch.bfloat16, fold_lora=False), cpu_lora_dropout(model):
        assert sum(isinstance(m, CastSwiGLU) for m in model.modules()) == layers
        assert sum(isinstance(m, CpuDropout) for m in model.modules()) == 3 * layers
    assert not any(isinstance(m, CpuDropout) for m in model.modules())


@needs_kernels
def test_mlps_with_trainable_weights_are_fused_for_inference_only():
    plain = build_model("slm-xs", build_tokenizer(PROMPTS * 3, 300), seed=0)  # full fine-tune
    mlp = plain.model.layers[0].mlp
    assert not is_swiglu_mlp(mlp)  # trainable weights: training keeps them as they are
    with cast_linear_copy(plain, torch.bfloat16, fold_lora=False):
        assert plain.model.layers[0].mlp is mlp
    assert is_swiglu_mlp(mlp, trainable_ok=True)
    with torch.no_grad(), cast_linear_copy(plain, torch.bfloat16, fold_lora=True):
        assert isinstance(plain.model.layers[0].mlp, CastSwiGLU)
    assert plain.model.layers[0].mlp is mlp


@needs_kernels
def test_sft_through_the_fused_mlp_learns_as_the_path_it_replaces(llama, monkeypatch):
    from lada.train.loop import OptimConfig
    from lada.train.sft import sft

    model, tok = _load(llama, ["q_proj", "k_proj", "v_proj", "o_proj"])
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    cfg = OptimConfig(lr=2e-2, batch_size=8, epochs=6, warmup_steps=0)
    set_autocast(model, torch.bfloat16)
    try:
        with frozen_cast_copy(model):
            assert any(isinstance(m, CastSwiGLU) for m in model.modules())
        stats = sft(model, tok, PROMPTS * 4, TARGETS * 4, cfg)
        assert not any(isinstance(m, CastSwiGLU | CastLinear) for m in model.modules())
        params = dict(model.named_parameters())
        assert all(torch.equal(params[n], v) for n, v in base.items())
        with torch.no_grad():
            for n, v in lora.items():
                params[n].copy_(v)
        monkeypatch.setattr(switch, "_current", RuntimeConfig(accel="torch"))  # no C kernels
        ref = sft(model, tok, PROMPTS * 4, TARGETS * 4, cfg)
    finally:
        set_autocast(model, None)
    assert stats.step_losses[-1] < 0.9 * stats.step_losses[0]
    # the first steps agree closely (a wrong gradient shows from step 2 on); later, lr 2e-2
    # on a tiny model can amplify bf16 round-off into single-step spikes of a few % either
    # way (seen with other lora_A draws: 5.055 vs 4.888 at step 11, within 0.2 % at step 12),
    # so the tail is compared by its mean
    for got, want in zip(stats.step_losses[:4], ref.step_losses[:4], strict=True):
        assert abs(got - want) < 0.01 * want
    tail, ref_tail = stats.step_losses[-6:], ref.step_losses[-6:]
    assert abs(sum(tail) - sum(ref_tail)) < 0.03 * sum(ref_tail)


@needs_kernels
def test_the_kernel_probe_runs_inside_no_grad():
    """The first cast copy of a process may be made under no_grad (a scoring pass); the probe
    checks the SwiGLU backward kernel against autograd and must still pass there."""
    K._probe.cache_clear()
    try:
        with torch.no_grad():
            assert K.kernels_unsupported("cpu", torch.float32, torch.bfloat16) is None
    finally:
        K._probe.cache_clear()
