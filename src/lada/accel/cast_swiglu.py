"""A SwiGLU MLP computed from one bf16 copy of its weights, with C kernels for the activation.

Training's cast copy (:func:`lada.accel.cast_weights.cast_linear_copy`) computes the matmuls
in bf16 but gives each layer's output back in fp32, so a Llama MLP's ``silu(gate) * up`` ran
as fp32 PyTorch ops on three ``[tokens, intermediate]`` tensors, with casts around them, and
its backward pass as half a dozen more: measured forward + backward per layer of
SmolLM2-135M at 720 tokens, ~1.4x the time of the same matmuls with the element-wise work in
bf16 (docs/real-models.md). :class:`CastSwiGLU` keeps the element-wise work but does it in
one C call each way (``lada_silu_mul`` / ``lada_silu_mul_backward`` in
``kernels/decode_step.c``): the forward pass reads the bf16 gate|up output of one fused matmul
and writes the bf16 input of the down projection; the backward pass writes the bf16 gradient
of gate|up. Both compute in fp32 and round once, as the fp32 ops followed by the cast did (up
to ``exp``'s last bit); the gate and up input gradients now come from one matmul, summed in
its fp32 accumulator instead of two bf16 matmul outputs added in bf16. Saved for the backward
pass: the bf16 gate|up output only (was three fp32 tensors).

Used for MLP classes known to compute ``down(silu(gate(x)) * up(x))`` with plain linear layers
or plain LoRA layers (training: the adapters stay the layers' own trainable parameters, under
their names) on CPU, where the C kernels build and pass their probe (``runtime.accel`` other
than ``native`` turns it off with the other kernels).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lada.accel.decode_kernels import should_use_kernels, silu_mul, silu_mul_backward

SWIGLU_MLPS = ("LlamaMLP", "Qwen2MLP", "Qwen3MLP", "MistralMLP")


class SiluMul(torch.autograd.Function):
    """``silu(gate) * up`` of a ``[..., 2 i]`` bf16 gate|up tensor, forward and backward in C."""

    @staticmethod
    def forward(ctx, gate_up: Tensor) -> Tensor:
        gate_up = gate_up.contiguous()
        ctx.save_for_backward(gate_up)
        return silu_mul(gate_up)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (gate_up,) = ctx.saved_tensors
        return silu_mul_backward(gate_up, grad.contiguous().to(torch.bfloat16))


def _is_plain_lora(layer: nn.Module) -> bool:
    """A peft LoRA layer over a frozen ``nn.Linear``, not merged, each active adapter with
    its own A/B (see :func:`lada.accel.ops.is_plain_lora`)."""
    from lada.accel.ops import is_plain_lora

    return (
        is_plain_lora(layer)
        and not getattr(layer, "merged", False)
        and not layer.base_layer.weight.requires_grad
    )


def is_swiglu_mlp(module: nn.Module, trainable_ok: bool = False, lora_ok: bool = False) -> bool:
    """Whether ``module`` is a known SwiGLU MLP (:data:`SWIGLU_MLPS`, SiLU activation) whose
    three projections are plain ``nn.Linear`` layers on CPU, frozen unless ``trainable_ok``,
    or (with ``lora_ok``) plain peft LoRA layers over frozen ones."""
    if type(module).__name__ not in SWIGLU_MLPS:
        return False
    act = getattr(module, "act_fn", None)
    if type(act).__name__ not in ("SiLUActivation", "SiLU"):
        return False
    for name in ("gate_proj", "up_proj", "down_proj"):
        layer = getattr(module, name, None)
        if lora_ok and layer is not None and _is_plain_lora(layer):
            layer = layer.base_layer
        elif type(layer) is not nn.Linear or (layer.weight.requires_grad and not trainable_ok):
            return False
        if layer.weight.device.type != "cpu" or not layer.weight.is_floating_point():
            return False
    return True


def swiglu_kernels_usable() -> bool:
    """Whether the C SwiGLU kernels can run here (``runtime.accel: native``; they
    build and pass :func:`lada.accel.decode_kernels.kernels_unsupported`'s probe, whose
    reason is logged once where not)."""
    return should_use_kernels("cpu", torch.float32, torch.bfloat16, None)


class LoraAdapters(nn.Module):
    """A LoRA layer's adapter tables under peft's names, so that its parameters keep their
    names (``...mlp.gate_proj.lora_A.default.weight``) and optimisers and the dropout swap
    (:func:`lada.accel.lora_dropout.cpu_lora_dropout`) find them; flags and scaling are read
    from the layer at every call."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.lora_A, self.lora_B, self.lora_dropout = layer.lora_A, layer.lora_B, layer.lora_dropout
        self.lora = [layer]  # a list: not a submodule, no second path to the base weight


def adapter_terms(holder: nn.Module, x: Tensor, dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
    """``(h, b)`` per active adapter of the LoRA layer ``holder.lora[0]`` (none while its
    adapters are disabled): ``h = A dropout(x)`` and ``b = s B``, both in ``dtype``, from
    ``holder``'s ``lora_A`` / ``lora_B`` / ``lora_dropout`` tables; the adapter adds ``h b^T``.
    Shared by :class:`LoraAdapters` and :class:`lada.accel.cast_weights.CastLoraLinear`."""
    (layer,) = holder.lora
    if layer.disable_adapters:
        return []
    out = []
    for a in layer.active_adapters:
        if a in holder.lora_A:
            h = nn.functional.linear(holder.lora_dropout[a](x), holder.lora_A[a].weight.to(dtype))
            out.append((h, (holder.lora_B[a].weight * layer.scaling[a]).to(dtype)))
    return out


def _add_adapters(y: Tensor, parts: list[tuple[int, int, Tensor, Tensor]]) -> Tensor:
    """``y`` (``[..., width]``) plus each adapter's ``h b^T`` written into its rows
    ``[offset, offset + rows)`` of the output, all in one ``addmm`` (the B factors stacked
    block-wise, zero elsewhere)."""
    if not parts:
        return y
    width = y.shape[-1]
    hs = torch.cat([h.reshape(-1, h.shape[-1]) for _, _, h, _ in parts], dim=1)
    bs = torch.cat(
        [nn.functional.pad(b, (0, 0, off, width - off - rows)) for off, rows, _, b in parts], dim=1
    )
    return torch.addmm(y.reshape(-1, width), hs, bs.t()).view(y.shape)


class CastSwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))`` from bf16 copies of ``mlp``'s (base) weights, gate and
    up stacked into one matrix, made once; LoRA adapters on any of the three stay trainable
    (added in bf16 from the same cast input, as :class:`lada.accel.cast_weights.CastLoraLinear`
    adds them); the output in ``x``'s dtype. See the module doc."""

    def __init__(self, mlp: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        if dtype != torch.bfloat16:
            raise ValueError(f"CastSwiGLU computes in bf16, not {dtype}")
        layers = [mlp.gate_proj, mlp.up_proj, mlp.down_proj]
        gate, up, down = [getattr(m, "base_layer", m) for m in layers]
        for name, layer in zip(("gate_proj", "up_proj", "down_proj"), layers, strict=True):
            if hasattr(layer, "base_layer"):
                self.add_module(name, LoraAdapters(layer))
        with torch.no_grad():
            stacked = torch.cat([gate.weight, up.weight]).to(dtype)
            bias = None
            if gate.bias is not None or up.bias is not None:
                parts = [
                    m.bias if m.bias is not None else m.weight.new_zeros(m.out_features)
                    for m in (gate, up)
                ]
                bias = torch.cat(parts).to(dtype)
            self.register_buffer("gate_up", stacked, persistent=False)
            self.register_buffer("gate_up_bias", bias, persistent=False)
            self.register_buffer("down", down.weight.detach().to(dtype), persistent=False)
            down_bias = None if down.bias is None else down.bias.detach().to(dtype)
            self.register_buffer("down_bias", down_bias, persistent=False)

    def _lora(self, name: str, x: Tensor, offset: int, rows: int):
        adapters = self._modules.get(name)
        if adapters is None:
            return []
        return [(offset, rows, h, b) for h, b in adapter_terms(adapters, x, self.gate_up.dtype)]

    def forward(self, x: Tensor) -> Tensor:
        xc = x.to(self.gate_up.dtype)
        gate_up = nn.functional.linear(xc, self.gate_up, self.gate_up_bias)
        half = self.gate_up.shape[0] // 2  # gate's rows, then up's (the same width)
        adapters = self._lora("gate_proj", xc, 0, half) + self._lora("up_proj", xc, half, half)
        h = SiluMul.apply(_add_adapters(gate_up, adapters))
        y = nn.functional.linear(h, self.down, self.down_bias)
        y = _add_adapters(y, self._lora("down_proj", h, 0, y.shape[-1]))
        return y.to(x.dtype)
