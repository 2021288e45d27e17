"""bf16 linear layers from weights packed once (lada.accel.packed_linear): the same numbers
as ``linear`` for any row count and shape, and a clear refusal where packing cannot run."""

from __future__ import annotations

import pytest
import torch

from lada.accel.packed_linear import Projection, packing_unsupported, should_pack

needs_packing = pytest.mark.skipif(
    packing_unsupported(torch.bfloat16) is not None,
    reason=f"packed bf16 linear not available here: {packing_unsupported(torch.bfloat16)}",
)


@needs_packing
@pytest.mark.parametrize("shape", [(1, 64), (7, 64), (3, 5, 64), (300, 64)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_packed_projection_equals_linear(shape, with_bias):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 64, generator=gen).bfloat16()
    bias = torch.randn(96, generator=gen).bfloat16() if with_bias else None
    x = torch.randn(*shape, generator=gen).bfloat16()
    packed = Projection(weight, bias, pack=True)
    assert packed.packed is not None and packed.weight is None
    got = packed(x)
    want = torch.nn.functional.linear(x, weight, bias)
    assert got.shape == want.shape and got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), atol=1e-2, rtol=1e-2)


def test_fp32_weights_are_not_packed_and_demanding_it_is_an_error():
    weight = torch.randn(8, 4)
    assert "float32" in packing_unsupported(weight.dtype)
    assert should_pack(weight.dtype, "cpu", None, "test") is False  # auto: fp32 stays plain
    assert should_pack(weight.dtype, "cpu", False, "test") is False
    with pytest.raises(ValueError, match="cannot pack the test weights: weights in torch.float32"):
        should_pack(weight.dtype, "cpu", True, "test")
    plain = Projection(weight, None, pack=False)
    x = torch.randn(3, 4)
    assert torch.equal(plain(x), torch.nn.functional.linear(x, weight))
