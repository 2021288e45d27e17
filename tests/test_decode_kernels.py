"""The lean decoder's C kernels (lada.accel.decode_kernels) against the PyTorch ops they
replace: each kernel alone, a whole decode with and without them, and where they refuse."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from lada.accel import decode_kernels as K
from lada.accel import switch
from lada.accel.lean_decoder import LeanDecoder, rms_norm, rotate, signed_sin
from lada.accel.settings import RuntimeConfig
from lada.models import build_model, build_tokenizer
from lada.models.zoo import ModelSpec

REASON = K.kernels_unsupported("cpu", torch.float32, torch.bfloat16)
needs_kernels = pytest.mark.skipif(REASON is not None, reason=f"no C kernels here: {REASON}")
BF16_ULP = 2.0**-7  # bf16's relative spacing: one rounding step apart at most


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close_bf16(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal up to one bf16 rounding step (sums added in another order can round the other
    way), and equal in almost every element."""
    got, want = got.float(), want.float()
    assert ((got - want).abs() <= BF16_ULP * want.abs() + 1e-6).all()
    assert (got == want).float().mean() > 0.9


@needs_kernels
def test_add_rms_norm_is_the_residual_add_then_rms_norm():
    g = _gen()
    h = torch.randn(5, 96, generator=g)
    delta = torch.randn(5, 96, generator=g).bfloat16()
    w = torch.randn(96, generator=g)
    want_h = h + delta  # fp32 + bf16 in PyTorch: the bf16 value promoted, one fp32 add
    want = rms_norm(want_h, w, 1e-6).to(torch.bfloat16)
    got = K.add_rms_norm(h, delta, w, 1e-6)
    assert torch.equal(h, want_h)  # in place, bit for bit
    _close_bf16(got, want)
    plain = torch.randn(5, 96, generator=g)
    _close_bf16(K.add_rms_norm(plain.clone(), None, w, 1e-6), rms_norm(plain, w, 1e-6).bfloat16())
    K.add_bf16(h, delta)
    assert torch.equal(h, want_h + delta)


@needs_kernels
def test_rotary_cache_rotates_queries_and_keys_and_writes_the_cache_slot():
    g = _gen(1)
    rows, nq, nkv, d, capacity, pos = 3, 4, 2, 16, 6, 4
    qkv = torch.randn(rows, (nq + 2 * nkv) * d, generator=g).bfloat16()
    cos, sin = torch.randn(rows, d, generator=g), signed_sin(torch.randn(rows, d, generator=g))
    keys = torch.zeros(rows, nkv, capacity, d)
    values = torch.zeros(rows, nkv, capacity, d, dtype=torch.bfloat16)
    q = K.rotary_cache(qkv, cos, sin, nq, nkv, keys, values, pos)
    x = qkv.float()
    q_want, k_want, v_want = x.split((nq * d, nkv * d, nkv * d), dim=-1)
    rot = lambda t, n: rotate(t.view(rows, n, d), cos[:, None], sin[:, None])  # noqa: E731
    assert torch.equal(q, rot(q_want, nq))  # bit for bit: the same fp32 products and sums
    assert torch.equal(keys[:, :, pos], rot(k_want, nkv))
    assert torch.equal(values[:, :, pos].float(), v_want.view(rows, nkv, d))  # exact in bf16
    others = [p for p in range(capacity) if p != pos]
    assert not keys[:, :, others].any() and not values[:, :, others].any()


def _attention(q, keys, values, mask, length, scale):
    """PyTorch's one-query attention with grouped heads (the lean decoder's own ops)."""
    rows, nq, d = q.shape
    nkv = keys.shape[1]
    grouped = q.reshape(rows, nkv, nq // nkv, d)
    k, v = keys[:, :, :length], values[:, :, :length]
    scores = grouped @ k.transpose(-1, -2) * scale + mask[:, None, None, :length]
    return (scores.softmax(-1) @ v.float()).reshape(rows, nq * d)


@needs_kernels
@pytest.mark.parametrize("d", [64, 16, 24])  # vector paths (16, 64) and the plain C one (24)
def test_attend_one_is_softmax_attention_over_the_unmasked_positions(d):
    g = _gen(2)
    rows, nq, nkv, capacity, length = 4, 6, 2, 40, 33
    q = torch.randn(rows, nq, d, generator=g)
    keys = torch.randn(rows, nkv, capacity, d, generator=g)
    values = torch.randn(rows, nkv, capacity, d, generator=g).bfloat16()
    mask = torch.zeros(rows, capacity)
    mask[0, :5] = float("-inf")  # left padding of row 0
    mask[2, 7] = float("-inf")
    want = _attention(q, keys, values, mask, length, d**-0.5)
    got = K.attend_one(q, keys, values, mask, length, d**-0.5)
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), want, rtol=BF16_ULP, atol=1e-4)
    # masked positions and positions past ``length`` are never read
    keys[0, :, :5] = float("nan")
    values[2, :, 7] = float("nan")
    keys[:, :, length:] = float("nan")
    assert torch.equal(K.attend_one(q, keys, values, mask, length, d**-0.5), got)


@needs_kernels
def test_silu_mul_is_swiglus_product():
    gate_up = (torch.randn(3, 2 * 200, generator=_gen(3)) * 4).bfloat16()
    gate, up = gate_up.float().chunk(2, dim=-1)
    _close_bf16(K.silu_mul(gate_up), (torch.nn.functional.silu(gate) * up).bfloat16())


@needs_kernels
def test_shapes_that_do_not_fit_are_refused_before_any_write():
    keys, values = torch.zeros(2, 1, 4, 16), torch.zeros(2, 1, 4, 16, dtype=torch.bfloat16)
    qkv = torch.zeros(2, 3 * 16, dtype=torch.bfloat16)
    cos = torch.zeros(2, 16)
    with pytest.raises(ValueError, match="position 4"):
        K.rotary_cache(qkv, cos, cos, 1, 1, keys, values, 4)
    with pytest.raises(ValueError, match="qkv"):
        K.rotary_cache(qkv[:, :32], cos, cos, 1, 1, keys, values, 0)
    with pytest.raises(ValueError, match="length 5"):
        K.attend_one(torch.zeros(2, 1, 16), keys, values, torch.zeros(2, 4), 5, 1.0)
    with pytest.raises(ValueError, match="contiguous"):
        K.add_rms_norm(torch.zeros(4, 2).t(), None, torch.ones(4), 1e-6)
    assert not keys.any()


SPECS = {  # grouped-query attention; qwen2 has q/k/v biases; head sizes 16 and 24
    "llama": ModelSpec("k-llama", "llama", 64, 2, 4, 2, 160, tie_word_embeddings=False),
    "qwen2": ModelSpec("k-qwen2", "qwen2", 72, 2, 3, 1, 160),
}


@needs_kernels
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_a_decode_with_kernels_matches_the_pytorch_ops(family):
    prompts = [f"Double {a}\n" for a in range(6)] + ["Max has 3 cards. He buys 4 more.\n"]
    tok = build_tokenizer(prompts * 3, vocab_size=200)
    model = build_model(SPECS[family], tok, seed=2).eval()
    from lada.train.batching import encode_prompts, left_pad

    batch = left_pad(encode_prompts(tok, prompts), tok.pad_token_id)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    runs: dict[bool, list[torch.Tensor]] = {}
    tokens: list[torch.Tensor] = []  # the plain run's greedy tokens, fed to both runs
    for kernels in (False, True):
        dec = LeanDecoder(model, torch.bfloat16, kernels=kernels)
        assert dec.kernels is kernels
        logits = [dec.prefill(ids, mask, positions, ids.shape[1] + 8)]
        pos = positions[:, -1]
        for j in range(8):
            if not kernels:
                tokens.append(logits[-1].argmax(-1))
            pos = pos + 1
            logits.append(dec.step(tokens[j], pos))
        runs[kernels] = logits
    for plain, fused in zip(runs[False], runs[True], strict=True):
        assert plain.dtype == fused.dtype == torch.float32
        assert (plain - fused).abs().max() < 0.05 * plain.abs().max()
        assert (plain.argmax(-1) == fused.argmax(-1)).float().mean() >= 6 / 7


def test_kernels_demanded_where_they_cannot_run_are_refused(monkeypatch, tmp_path, caplog):
    tok = build_tokenizer(["a b c"] * 3, vocab_size=120)
    model = build_model(SPECS["llama"], tok, seed=0).eval()
    with pytest.raises(ValueError, match="fp32 / bf16"):
        LeanDecoder(model, kernels=True)  # fp32 matmuls: the kernels are for bf16 ones
    assert "gelu" in K.kernels_unsupported("cpu", torch.float32, torch.bfloat16, "gelu")
    assert LeanDecoder(model).kernels is False  # fp32 decoding never uses them, quietly
    monkeypatch.setattr(switch, "_current", RuntimeConfig(accel="torch"))  # no C kernels
    assert LeanDecoder(model, torch.bfloat16).kernels is False
    monkeypatch.setattr(switch, "_current", RuntimeConfig())
    # no compiler: named, and (auto) the PyTorch ops run with the reason in the log
    monkeypatch.setenv("CC", "no-such-compiler-lada")
    monkeypatch.setenv("LADA_CACHE", str(tmp_path))
    K._probe.cache_clear()
    K._library.cache_clear()
    try:
        reason = K.kernels_unsupported("cpu", torch.float32, torch.bfloat16)
        assert reason is not None and "no-such-compiler-lada" in reason
        with pytest.raises(ValueError, match="no-such-compiler-lada"):
            LeanDecoder(model, torch.bfloat16, kernels=True)
        with caplog.at_level(logging.INFO, logger="lada.accel.decode_kernels"):
            assert LeanDecoder(model, torch.bfloat16).kernels is False
        assert any("no-such-compiler-lada" in r.getMessage() for r in caplog.records)
    finally:
        K._probe.cache_clear()
        K._library.cache_clear()


@needs_kernels
def test_the_library_is_built_once_per_source_and_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("LADA_CACHE", str(tmp_path))
    first = K.library_path()
    stamp = first.stat().st_mtime_ns
    assert first.is_relative_to(tmp_path) and first.exists()
    assert K.library_path() == first and first.stat().st_mtime_ns == stamp
    names = sorted(p.name for p in first.parent.iterdir())
    assert names == ["decode_step.so", "decode_step.so.sha256"]  # no temp left; its digest


@needs_kernels
def test_a_kernel_that_computes_wrongly_is_caught_by_the_probe(monkeypatch):
    real = K._library()

    class Broken:  # the real library, but its attention writes nothing
        def __getattr__(self, name):
            return getattr(real, name)

        def lada_attend_one(self, *args):
            return None

    monkeypatch.setattr(K, "_library", lambda: Broken())
    K._probe.cache_clear()
    try:
        assert "attention kernel disagrees" in K._probe()
    finally:
        K._probe.cache_clear()
