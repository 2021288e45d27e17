"""CpuDropout (LoRA dropout on CPU: the C kernel's counter-based stream, or masks from 16-bit
randoms) and its swap during training."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lada.accel import lora_dropout as D
from lada.accel import switch
from lada.accel.lora_dropout import CpuDropout, cpu_lora_dropout
from lada.accel.settings import RuntimeConfig
from lada.models import build_model, build_tokenizer

REASON = D.kernel_unsupported()
needs_kernel = pytest.mark.skipif(REASON is not None, reason=f"no C dropout kernel: {REASON}")
KERNEL = [pytest.param(True, marks=needs_kernel, id="kernel"), pytest.param(False, id="random_")]

PROMPTS = [f"Double {a}\n" for a in range(8)]
TARGETS = [f"Answer: {2 * a}" for a in range(8)]


@pytest.mark.parametrize("kernel", KERNEL)
def test_cpu_dropout_is_inverted_dropout_at_rate_p(kernel):
    torch.manual_seed(0)
    drop = CpuDropout(0.05, kernel=kernel)
    assert drop.kernel is kernel
    assert abs(drop.p - 0.05) < (2.0**-32 if kernel else 1 / 65536)
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


def _splitmix64_stream(seed: int, n: int) -> np.ndarray:
    """The documented stream, written independently: 32-bit half (i & 1) of SplitMix64 output
    i // 2 from state ``seed`` (low half first), for i < n."""
    with np.errstate(over="ignore"):
        k = np.arange((n + 1) // 2, dtype=np.uint64)
        z = np.uint64(seed) + (k + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    halves = np.stack([z & np.uint64(0xFFFFFFFF), z >> np.uint64(32)], axis=1).reshape(-1)
    return halves[:n]


@needs_kernel
@pytest.mark.parametrize("n", [1, 7, 8192 + 513, 70001])  # odd, one chunk, across blocks
def test_dropout_kernel_draws_the_documented_stream_on_any_thread_count(n):
    seed, threshold = 0xDEADBEEF12345, round(0.3 * 2**32)
    x = torch.randn(n, generator=torch.Generator().manual_seed(n)) + 10.0  # no zeros
    want_kept = torch.from_numpy(_splitmix64_stream(seed, n).astype(np.int64) >= threshold)
    threads = torch.get_num_threads()
    for t in {1, 2, threads}:
        torch.set_num_threads(t)
        try:
            y = D.kernel_dropout(x, seed, threshold, 1 / 0.7)
        finally:
            torch.set_num_threads(threads)
        assert torch.equal(y != 0, want_kept)
        assert torch.equal(y[want_kept], x[want_kept] * (1 / 0.7))


@needs_kernel
def test_dropout_kernel_on_bf16_rounds_as_pytorch_and_recomputes_the_mask_backward():
    x = torch.randn(3, 1000, generator=torch.Generator().manual_seed(2)).bfloat16()
    x[0, :3] = torch.tensor([float("nan"), float("inf"), 3e38])  # 3e38 * scale overflows
    drop = CpuDropout(0.2, kernel=True).train()
    torch.manual_seed(4)
    leaf = x.clone().requires_grad_(True)
    y = drop(leaf)
    assert y.dtype == torch.bfloat16
    kept = y != 0  # x has no zeros (NaN != 0 too)
    expect = torch.where(kept, x * drop.scale, 0.0)  # PyTorch's bf16 * scalar, rounded once
    assert torch.equal(y.float().nan_to_num(7.0), expect.float().nan_to_num(7.0))
    grad = torch.randn(3, 1000, generator=torch.Generator().manual_seed(3)).bfloat16()
    y.backward(grad)
    assert torch.equal(leaf.grad, torch.where(kept, grad * drop.scale, 0.0))
    torch.manual_seed(4)
    assert torch.equal(drop(x).float().nan_to_num(7.0), y.detach().float().nan_to_num(7.0))


def test_dropout_kernel_refused_or_logged_where_it_cannot_build(monkeypatch, tmp_path, caplog):
    from lada.utils.log_once import forget

    monkeypatch.setenv("CC", "no-such-compiler-lada")
    monkeypatch.setenv("LADA_CACHE", str(tmp_path))
    D.kernel_unsupported.cache_clear()
    D._library.cache_clear()
    forget()
    try:
        with pytest.raises(ValueError, match="no-such-compiler-lada"):
            CpuDropout(0.1, kernel=True)
        with caplog.at_level(logging.INFO, logger="lada.accel.lora_dropout"):
            assert CpuDropout(0.1).kernel is False  # auto: the random_ masks, said once
        assert any("no-such-compiler-lada" in r.getMessage() for r in caplog.records)
    finally:
        D.kernel_unsupported.cache_clear()
        D._library.cache_clear()
    monkeypatch.setattr(switch, "_current", RuntimeConfig(accel="torch"))  # no C kernels
    assert CpuDropout(0.1).kernel is False


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


@needs_kernel
def test_the_dropout_probe_runs_inside_no_grad():
    """The first CpuDropout of a process may be made under no_grad (its probe checks the
    backward pass): it must still find the kernel usable."""
    D.kernel_unsupported.cache_clear()
    try:
        with torch.no_grad():
            assert D.kernel_unsupported() is None
    finally:
        D.kernel_unsupported.cache_clear()
