"""A SwiGLU MLP computed from one bf16 copy of its weights, with C kernels for the activation.

Training's cast copy (:func:`lada.models.cast_weights.cast_linear_copy`) computes the matmuls
in bf16 but gives each layer's output back in fp32, so a Llama MLP's ``silu(gate) * up`` ran
as fp32 PyTorch ops on three ``[tokens, intermediate]`` tensors, with casts around them, and
its backward pass as half a dozen more: measured 37 ms forward + backward per layer of
SmolLM2-135M at 720 tokens, against 26 ms for the same matmuls with the element-wise work in
bf16 (docs/real-models.md). :class:`CastSwiGLU` keeps the element-wise work but does it in
one C call each way (``lada_silu_mul`` / ``lada_silu_mul_backward`` in
``kernels/decode_step.c``): the forward pass reads the bf16 gate|up output of one fused matmul
and writes the bf16 input of the down projection; the backward pass writes the bf16 gradient
of gate|up. Both compute in fp32 and round once, as the fp32 ops followed by the cast did (up
to ``exp``'s last bit); the gate and up input gradients now come from one matmul, summed in
its fp32 accumulator instead of two bf16 matmul outputs added in bf16. Saved for the backward
pass: the bf16 gate|up output only (was three fp32 tensors).

Used for MLP classes known to compute ``down(silu(gate(x)) * up(x))`` with plain linear
layers (no LoRA on them) on CPU, where the C kernels build and pass their probe
(``LADA_KERNELS=0`` turns it off with the other kernels).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

SWIGLU_MLPS = ("LlamaMLP", "Qwen2MLP", "Qwen3MLP", "MistralMLP")


class SiluMul(torch.autograd.Function):
    """``silu(gate) * up`` of a ``[..., 2 i]`` bf16 gate|up tensor, forward and backward in C."""

    @staticmethod
    def forward(ctx, gate_up: Tensor) -> Tensor:
        from lada.models.decode_kernels import silu_mul

        gate_up = gate_up.contiguous()
        ctx.save_for_backward(gate_up)
        return silu_mul(gate_up)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        from lada.models.decode_kernels import silu_mul_backward

        (gate_up,) = ctx.saved_tensors
        return silu_mul_backward(gate_up, grad.contiguous().to(torch.bfloat16))


def is_swiglu_mlp(module: nn.Module, trainable_ok: bool = False) -> bool:
    """Whether ``module`` is a known SwiGLU MLP (:data:`SWIGLU_MLPS`, SiLU activation) whose
    three projections are plain ``nn.Linear`` layers on CPU, frozen unless ``trainable_ok``."""
    if type(module).__name__ not in SWIGLU_MLPS:
        return False
    act = getattr(module, "act_fn", None)
    if type(act).__name__ not in ("SiLUActivation", "SiLU"):
        return False
    layers = [getattr(module, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
    return all(
        type(layer) is nn.Linear
        and layer.weight.device.type == "cpu"
        and layer.weight.is_floating_point()
        and (trainable_ok or not layer.weight.requires_grad)
        for layer in layers
    )


def swiglu_kernels_usable() -> bool:
    """Whether the C SwiGLU kernels can run here (not switched off by ``LADA_KERNELS=0``; they
    build and pass :func:`lada.models.decode_kernels.kernels_unsupported`'s probe, whose
    reason is logged once where not)."""
    if os.environ.get("LADA_KERNELS") == "0":
        return False
    from lada.models.decode_kernels import should_use_kernels

    return should_use_kernels("cpu", torch.float32, torch.bfloat16, None)


class CastSwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))`` from bf16 copies of ``mlp``'s weights (gate and up
    stacked into one matrix), made once; the output in ``x``'s dtype. See the module doc."""

    def __init__(self, mlp: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        if dtype != torch.bfloat16:
            raise ValueError(f"CastSwiGLU computes in bf16, not {dtype}")
        gate, up, down = mlp.gate_proj, mlp.up_proj, mlp.down_proj
        with torch.no_grad():
            stacked = torch.cat([gate.weight, up.weight]).to(dtype)
            bias = None
            if gate.bias is not None or up.bias is not None:
                parts = [
                    layer.bias
                    if layer.bias is not None
                    else layer.weight.new_zeros(layer.out_features)
                    for layer in (gate, up)
                ]
                bias = torch.cat(parts).to(dtype)
            self.register_buffer("gate_up", stacked, persistent=False)
            self.register_buffer("gate_up_bias", bias, persistent=False)
            self.register_buffer("down", down.weight.detach().to(dtype), persistent=False)
            down_bias = None if down.bias is None else down.bias.detach().to(dtype)
            self.register_buffer("down_bias", down_bias, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        xc = x.to(self.gate_up.dtype)
        gate_up = nn.functional.linear(xc, self.gate_up, self.gate_up_bias)
        h = SiluMul.apply(gate_up)
        return nn.functional.linear(h, self.down, self.down_bias).to(x.dtype)
