"""CpuDropout (LoRA dropout masks from 16-bit randoms) and its swap during training."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import torch
from torch import nn

from lada.models import build_model, build_tokenizer
from lada.models.lora_dropout import CpuDropout, cpu_lora_dropout

PROMPTS = [f"Double {a}\n" for a in range(8)]
TARGETS = [f"Answer: {2 * a}" for a in range(8)]


def test_cpu_dropout_is_inverted_dropout_at_rate_p():
    torch.manual_seed(0)
    drop = CpuDropout(0.05)
    assert abs(drop.p - 0.05) < 1 / 65536
    x = (torch.rand(1001, 999) + 0.5).requires_grad_()  # odd size: half a 32-bit draw left over
    y = drop(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - drop.p) < 0.002  # ~1M draws: sd ~ 0.0002
    torch.testing.assert_close(y[kept], x.detach()[kept] / (1 - drop.p))
    y.sum().backward()
    expected = kept.float() / (1 - drop.p)
    torch.testing.assert_close(x.grad, expected)
    other = drop(x.detach())
    assert not torch.equal(other != 0, kept)  # a fresh mask per call
    torch.manual_seed(1)
    first = drop(x.detach())
    torch.manual_seed(1)
    assert torch.equal(drop(x.detach()), first)  # seeded by torch's generator


def test_cpu_dropout_passes_through_in_eval_and_at_zero():
    x = torch.randn(4, 7)
    assert CpuDropout(0.3).eval()(x) is x
    assert CpuDropout(0.0)(x) is x
    with pytest.raises(ValueError):
        CpuDropout(1.0)


@pytest.fixture(scope="module")
def lora_model(tmp_path_factory):
    from lada.models.loading import LoraSettings, load_causal_lm

    tok = build_tokenizer([p + t for p, t in zip(PROMPTS, TARGETS, strict=True)] * 3, 300)
    path: Path = tmp_path_factory.mktemp("tiny")
    build_model("slm-xs", tok, seed=3).save_pretrained(path)
    tok.save_pretrained(path)
    return load_causal_lm(path, lora=LoraSettings(r=4, alpha=8, dropout=0.1), device="cpu")


def test_cpu_lora_dropout_swaps_lora_dropout_and_restores_it(lora_model):
    model, _ = lora_model
    before = [m for m in model.modules() if type(m) is nn.Dropout and m.p == 0.1]
    assert before
    with cpu_lora_dropout(model):
        swapped = [m for m in model.modules() if isinstance(m, CpuDropout)]
        assert len(swapped) == len(before) and all(abs(m.p - 0.1) < 1e-4 for m in swapped)
        assert not any(type(m) is nn.Dropout and m.p == 0.1 for m in model.modules())
    after = [m for m in model.modules() if type(m) is nn.Dropout and m.p == 0.1]
    assert [id(m) for m in after] == [id(m) for m in before]
    assert not any(isinstance(m, CpuDropout) for m in model.modules())


def test_sft_with_lora_dropout_trains_the_adapters_and_restores_the_modules(lora_model):
    from lada.train.loop import OptimConfig
    from lada.train.sft import sft

    model, tok = lora_model
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    cfg = OptimConfig(lr=1e-2, batch_size=8, epochs=3, warmup_steps=0, seed=5)
    stats = sft(model, tok, PROMPTS * 4, TARGETS * 4, cfg)
    assert stats.step_losses[-1] < stats.step_losses[0]
    params = dict(model.named_parameters())
    assert all(not torch.equal(params[n], v) for n, v in lora.items() if "lora_B" in n)
    assert not any(isinstance(m, CpuDropout) for m in model.modules())
    with torch.no_grad():
        for n, v in lora.items():
            params[n].copy_(v)
    again = sft(model, tok, PROMPTS * 4, TARGETS * 4, cfg)  # seeded: the same dropout masks
    assert again.step_losses == stats.step_losses
