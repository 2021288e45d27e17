"""A lean forward pass for greedy decoding with Llama-family models (Llama, Qwen2).

Why (measured, docs/real-models.md): decoding a 135 M-parameter model at batch 16 on a 2-core
CPU, the bf16 matmuls (the weights streamed from memory) took a third of the time of a step
through the Hugging Face forward on the same bf16 copies, the rest was overhead: per-step mask building, cache objects, seven separate projections per layer, CPU
flash attention for a one-token query, and dtype casts around every linear layer. This module
runs the same equations with

* the projections that share an input fused into one matmul (q|k|v, gate|up), LoRA adapters
  folded in, copied once per call in the compute dtype (bf16 where the model autocasts to it);
* a preallocated key/value buffer per layer, written in place;
* attention of the one new query with the query heads that share a key head handed over as
  that head's queries (no repeated keys), and the padding mask kept as one additive row per
  sequence;
* on a CPU with native bf16, the bf16 weight copies packed once for oneDNN
  (:mod:`lada.accel.packed_linear`: the plain ``linear`` reorders every weight at every
  call, which was half of a decode step's matmul time).
* in the prefill of left-padded prompts, only the real tokens through the projections and
  MLPs (packed rows; attention scatters them back): padding was 23 % of the benchmark's
  prefill rows, and the prefill runs at the bf16 matmul peak;
* ``torch.inference_mode`` rather than ``no_grad`` (no version counters or autograd
  metadata on the ~45 small tensors a layer makes per step: 4-5 % of the real config's
  evaluation job, same paths).
* on a CPU with bf16 matmuls and an fp32 residual stream, the work between two matmuls in
  one fused C kernel each (:mod:`lada.accel.decode_kernels`: the residual add with RMSNorm
  and the cast, rotary with the cache write, one-query attention, SwiGLU), and the value
  cache in bf16 (exact: the values are a bf16 matmul's output). A decode step's ~45 small ops
  a layer were about half of its time at batch 16; the prefill uses the norm and
  SwiGLU kernels too (no fp32 copy of the gate|up output). Same arithmetic as the PyTorch
  ops, sums added in another order (logits agree to bf16 round-off; ``kernels=False`` or
  ``runtime.accel: torch`` runs the PyTorch ops).

What stays as in the model: embeddings, RMSNorm (fp32 statistics), the model's own rotary
embedding module (so rope scaling variants come along), the activation function; norms,
residual stream, attention and the cache stay in the model's parameter dtype (fp32 on CPU; on
this CPU bf16 attention measured slower), as with
:func:`lada.accel.cast_weights.cast_linear_copy`. The prefill (the prompt, many
tokens at once) runs the same layers with ``scaled_dot_product_attention``.

Its logits equal the model's own forward up to float round-off (tests/test_lean_decoder.py),
and greedy decoding with it gives ``model.generate``'s tokens on fp32 models
(tests/test_eval.py). :func:`lean_decoder_unsupported` says why a model cannot use it (other
architectures, sliding-window layers, LoRA variants such as DoRA); the caller then runs the
model's own forward (``lada.eval.generate``), and says so in the log.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers.activations import ACT2FN

from lada.accel import decode_kernels as fused
from lada.accel.cast_weights import CastLinear, write_effective_weight
from lada.accel.decode_kernels import should_use_kernels
from lada.accel.ops import is_plain_lora, rms_norm, rotate, signed_sin  # noqa: F401 (public)
from lada.accel.packed_linear import Projection, should_pack

SUPPORTED_MODEL_TYPES = ("llama", "qwen2")
_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_PROJECTIONS = (*_ATTENTION, "gate_proj", "up_proj", "down_proj")


def _backbone(model: nn.Module) -> nn.Module:
    """The ``*ForCausalLM`` inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _foldable(module: nn.Module) -> bool:
    """Whether :func:`write_effective_weight` can read ``module``."""
    if hasattr(module, "base_layer"):
        return is_plain_lora(module)
    return isinstance(module, nn.Linear | CastLinear)


def lean_decoder_unsupported(model: nn.Module) -> str | None:
    """Why ``model`` cannot decode with :class:`LeanDecoder` (None when it can)."""
    base = _backbone(model)
    config = getattr(base, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in SUPPORTED_MODEL_TYPES:
        return f"model type {kind!r} (the lean decoder knows {', '.join(SUPPORTED_MODEL_TYPES)})"
    if "sliding_attention" in (getattr(config, "layer_types", None) or []):
        return "sliding-window attention layers"
    if getattr(config, "pretraining_tp", 1) != 1:
        return f"pretraining_tp={config.pretraining_tp}"
    if config.hidden_act not in ACT2FN:
        return f"activation {config.hidden_act!r}"
    inner = getattr(base, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not hasattr(base, "lm_head") or not hasattr(inner, "rotary_emb"):
        return "no model.layers / lm_head / rotary_emb"
    for i, layer in enumerate(layers):
        for name in _PROJECTIONS:
            owner = layer.self_attn if name in _ATTENTION else layer.mlp
            proj = getattr(owner, name, None)
            if proj is None or not _foldable(proj):
                return f"layer {i} {name}: not a linear layer or a plain LoRA layer"
            if not _is_float(proj):
                return f"layer {i} {name}: weights are not floating point (quantized?)"
    if not _foldable(base.lm_head):
        return "lm_head is not a linear layer"
    return None


def _is_float(module: nn.Module) -> bool:
    weight = getattr(getattr(module, "base_layer", module), "weight", None)
    return weight is not None and weight.is_floating_point()


def _fused(modules: list[nn.Module], dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    """One weight (and bias) in ``dtype`` for projections sharing an input, rows stacked in
    order; each part is written straight into its rows (:func:`write_effective_weight`)."""
    shapes = [_base(m).weight.shape for m in modules]
    rows = [shape[0] for shape in shapes]
    first = _base(modules[0]).weight
    weight = torch.empty(sum(rows), shapes[0][1], dtype=dtype, device=first.device)
    biases = [
        write_effective_weight(m, part) for m, part in zip(modules, weight.split(rows), strict=True)
    ]
    if all(b is None for b in biases):
        return weight, None
    bias = torch.zeros(sum(rows), dtype=dtype, device=first.device)
    for b, part in zip(biases, bias.split(rows), strict=True):
        if b is not None:
            part.copy_(b.detach())
    return weight, bias


def _base(module: nn.Module) -> nn.Module:
    """The linear layer holding ``module``'s weight (a LoRA layer's base layer)."""
    return getattr(module, "base_layer", module)


@dataclass
class _Layer:
    norm_in: Tensor
    eps_in: float
    qkv: Projection
    out: Projection
    norm_post: Tensor
    eps_post: float
    gate_up: Projection
    down: Projection


class LeanDecoder:
    """The decode state of one batch: fused weights (made once per :class:`LeanDecoder`), a key /
    value buffer per layer, and the additive padding mask.

    Use: ``prefill(ids, mask, positions)`` once (left-padded prompts), then ``step(tokens,
    positions)`` for each new token; ``keep(rows)`` drops finished rows. Both return the
    logits of the last position, ``[rows, vocab]`` in fp32.
    """

    def __init__(
        self,
        model: nn.Module,
        compute_dtype: torch.dtype | None = None,
        *,
        pack: bool | None = None,
        kernels: bool | None = None,
    ) -> None:
        reason = lean_decoder_unsupported(model)
        if reason is not None:
            raise ValueError(f"the lean decoder cannot run this model: {reason}")
        base = _backbone(model)
        config = base.config
        inner = base.model
        self.device = inner.embed_tokens.weight.device
        self.dtype = inner.embed_tokens.weight.dtype  # residual stream, norms, attention, cache
        self.compute = compute_dtype or self.dtype  # matmul weights
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scale = self.head_dim**-0.5
        self.act = ACT2FN[config.hidden_act]
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.pack = should_pack(self.compute, self.device, pack, "lean decoder")
        self.kernels = should_use_kernels(
            self.device, self.dtype, self.compute, kernels, config.hidden_act
        )
        # with the kernels, values are cached in bf16: they are a bf16 matmul's output (exact)
        self.value_dtype = torch.bfloat16 if self.kernels else self.dtype
        with torch.no_grad():
            self.layers = [self._layer(layer) for layer in inner.layers]
            self.final_norm = (inner.norm.weight.detach(), inner.norm.variance_epsilon)
            self.head = self._projection([base.lm_head])
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []
        self.length = 0
        self.mask = torch.empty(0)

    def _layer(self, layer: nn.Module) -> _Layer:
        attn, mlp = layer.self_attn, layer.mlp
        return _Layer(
            norm_in=layer.input_layernorm.weight.detach(),
            eps_in=layer.input_layernorm.variance_epsilon,
            qkv=self._projection([attn.q_proj, attn.k_proj, attn.v_proj]),
            out=self._projection([attn.o_proj]),
            norm_post=layer.post_attention_layernorm.weight.detach(),
            eps_post=layer.post_attention_layernorm.variance_epsilon,
            gate_up=self._projection([mlp.gate_proj, mlp.up_proj]),
            down=self._projection([mlp.down_proj]),
        )

    def _projection(self, modules: list[nn.Module]) -> Projection:
        return Projection(*_fused(modules, self.compute), pack=self.pack)

    def _project(self, x: Tensor, projection: Projection) -> Tensor:
        """``projection(x)`` in the compute dtype."""
        return projection(x.to(self.compute))

    @torch.inference_mode()
    def prefill(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        positions: Tensor,
        capacity: int,
        prefix: Tensor | None = None,
    ) -> Tensor:
        """Run the (left-padded) prompts, allocating the cache for ``capacity`` positions.

        ``prefix`` (token ids ``[p]``): a start every prompt shares (a chat template's system
        turn), computed once for all rows; ``input_ids`` then holds the rest of each prompt,
        with ``positions`` counted from ``p``. Keys are stored after their rotation, so where
        a cached position sits in the buffer does not matter, only the mask does.
        """
        b, t = input_ids.shape
        p = 0 if prefix is None else len(prefix)
        capacity = max(capacity, p + t)
        shape = (b, self.kv_heads, capacity, self.head_dim)
        self.keys = [self._buffer(shape) for _ in self.layers]
        self.values = [self._buffer(shape, self.value_dtype) for _ in self.layers]
        self.mask = torch.full(
            (b, 1, 1, capacity), float("-inf"), dtype=self.dtype, device=self.device
        )
        self.mask[:, 0, 0, :p] = 0.0
        self.mask[:, 0, 0, p : p + t].masked_fill_(attention_mask.bool(), 0.0)
        self.length = 0
        if p:  # one row; its keys and values are written to every row's buffer
            causal = torch.ones(p, p, dtype=torch.bool, device=self.device).tril()
            at = torch.arange(p, device=self.device)[None]
            self._layers(prefix[None].to(self.device), at, causal[None, None])
        # causal and padding: a query sees the prefix and earlier real tokens; a pad query
        # sees itself only
        real = attention_mask.bool()
        own = torch.ones(t, t, dtype=torch.bool, device=self.device).tril()
        diagonal = torch.eye(t, dtype=torch.bool, device=self.device)
        own = (own[None] & real[:, None, :]) | diagonal
        allowed = torch.cat([own.new_ones(b, t, p), own], dim=2)[:, None]
        if bool(real.all()):
            return self._forward(input_ids, positions, allowed)
        # left padding: the projections and MLPs run on the real tokens only (packed)
        tokens = real.reshape(-1).nonzero().squeeze(1)
        h = self._layers(input_ids, positions, allowed, tokens)
        last = real.sum(1).cumsum(0) - 1  # each row's last token, in the packed order
        return self._logits(h.index_select(0, last))

    def _buffer(self, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> Tensor:
        return torch.empty(shape, dtype=dtype or self.dtype, device=self.device)

    @torch.inference_mode()
    def step(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """One new token per row (``tokens`` and ``positions``: ``[rows]``)."""
        self.mask[:, 0, 0, self.length] = 0.0
        if self.kernels:
            return self._step_fused(tokens, positions)
        return self._forward(tokens[:, None], positions[:, None], None)

    def _step_fused(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """:meth:`step` with the work between two matmuls done by one C kernel each
        (:mod:`lada.accel.decode_kernels`): the same arithmetic as :meth:`_layers`' PyTorch
        ops, in five kernel calls and four matmuls a layer instead of ~45 ops."""
        rows = tokens.shape[0]
        h = self.embed(tokens)  # [rows, hidden] fp32, updated in place
        cos, sin = self.rotary(h[:, None], positions[:, None])
        cos, sin = cos[:, 0].contiguous(), signed_sin(sin[:, 0])
        mask = self.mask.view(rows, -1)
        position, delta = self.length, None
        for i, layer in enumerate(self.layers):
            keys, values = self.keys[i], self.values[i]
            x = fused.add_rms_norm(h, delta, layer.norm_in, layer.eps_in)
            qkv = layer.qkv(x)
            q = fused.rotary_cache(qkv, cos, sin, self.heads, self.kv_heads, keys, values, position)
            att = fused.attend_one(q, keys, values, mask, position + 1, self.scale)
            x = fused.add_rms_norm(h, layer.out(att), layer.norm_post, layer.eps_post)
            delta = layer.down(fused.silu_mul(layer.gate_up(x)))
        self.length = position + 1
        _, x = self._add_norm(h, delta, *self.final_norm)
        return self.head(x).float()

    @torch.inference_mode()
    def keep(self, rows: Tensor) -> None:
        """Keep only ``rows`` (indices into the current batch) in the cache and mask."""
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]
        self.mask = self.mask.index_select(0, rows)

    def _forward(self, ids: Tensor, positions: Tensor, allowed: Tensor | None) -> Tensor:
        """Logits (fp32) of the last position after :meth:`_layers`."""
        return self._logits(self._layers(ids, positions, allowed)[:, -1])

    def _logits(self, h: Tensor) -> Tensor:
        """fp32 logits of final hidden states ``[rows, hidden]``."""
        _, x = self._add_norm(h.contiguous(), None, *self.final_norm)
        return self._project(x, self.head).float()

    def _layers(
        self, ids: Tensor, positions: Tensor, allowed: Tensor | None, tokens: Tensor | None = None
    ) -> Tensor:
        """Run the decoder layers on ``ids`` (written to the cache after what it holds);
        returns the hidden states ``[b, t, hidden]`` (``[n, hidden]`` with ``tokens``).
        ``allowed``: the boolean attention mask of many new tokens, None for one token per row
        (the additive row mask).

        ``tokens`` (with ``allowed``): the flat indices into ``[b * t]`` of the n real tokens
        (not padding). Only they go through the projections and MLPs, packed ``[n, hidden]``;
        attention scatters them back to ``[b, t]`` (a padding position gets zero keys and
        values, masked out anyway). Left padding was 23 % of a benchmark prefill's rows."""
        b, t = ids.shape
        h = self.embed(ids)
        cos, sin = self.rotary(h, positions)
        cos, sin = cos[:, :, None], signed_sin(sin[:, :, None])  # [b, t, 1, d]
        lead: tuple[int, ...] = (b, t)  # the leading dims of a projection's output
        if tokens is not None:
            h = h.reshape(b * t, -1).index_select(0, tokens)
            cos, sin = (c.reshape(b * t, 1, -1).index_select(0, tokens) for c in (cos, sin))
            lead = (-1,)
        start, end = self.length, self.length + t
        nq, nkv, d = self.heads, self.kv_heads, self.head_dim

        def heads(x: Tensor, n: int) -> Tensor:
            """``x`` with the leading dims ``lead`` (packed rows are scattered back) ->
            ``[b, n, t, d]``."""
            if tokens is not None:
                x = x.new_zeros(b * t, n, d).index_copy_(0, tokens, x.view(-1, n, d))
            return x.view(b, t, n, d).transpose(1, 2)

        delta = None  # the last layer's MLP output, not yet added to h
        for i, layer in enumerate(self.layers):
            h, x = self._add_norm(h, delta, layer.norm_in, layer.eps_in)
            qkv = self._project(x, layer.qkv).to(self.dtype)
            q, k, v = qkv.split((nq * d, nkv * d, nkv * d), dim=-1)
            q = heads(rotate(q.view(*lead, nq, d), cos, sin), nq)
            self.keys[i][:, :, start:end] = heads(rotate(k.view(*lead, nkv, d), cos, sin), nkv)
            self.values[i][:, :, start:end] = heads(v, nkv)
            # the first b rows: all of them, but one for a shared prefix
            keys, values = self.keys[i][:b, :, :end], self.values[i][:b, :, :end].to(self.dtype)
            if allowed is None:  # one query per row: grouped heads against their shared keys
                att = self._attend_one(q, keys, values, self.mask[:, :, :, :end])
            else:
                att = nn.functional.scaled_dot_product_attention(
                    q, keys, values, attn_mask=allowed, scale=self.scale, enable_gqa=nq != nkv
                )
            att = att.transpose(1, 2).reshape(b, t, nq * d)
            if tokens is not None:
                att = att.reshape(b * t, nq * d).index_select(0, tokens)
            h, x = self._add_norm(h, self._project(att, layer.out), layer.norm_post, layer.eps_post)
            delta = self._project(self._swiglu(self._project(x, layer.gate_up)), layer.down)
        self.length = end
        return self._add(h, delta)

    def _add_norm(
        self, h: Tensor, delta: Tensor | None, weight: Tensor, eps: float
    ) -> tuple[Tensor, Tensor]:
        """``h + delta`` (a matmul's output in the compute dtype, promoted by the sum into the
        residual dtype; None: nothing to add) and its RMSNorm cast to the compute dtype (the
        next matmul's input). With the kernels, one call, ``h`` updated in place."""
        if self.kernels:
            return h, fused.add_rms_norm(h, delta, weight, eps)
        h = h if delta is None else h + delta
        return h, rms_norm(h, weight, eps).to(self.compute)

    def _add(self, h: Tensor, delta: Tensor | None) -> Tensor:
        if delta is None:
            return h
        if self.kernels:
            fused.add_bf16(h, delta)
            return h
        return h + delta

    def _swiglu(self, gate_up: Tensor) -> Tensor:
        """``act(gate) * up`` of the fused gate|up output, in the residual dtype's arithmetic,
        cast to the compute dtype (the down projection's input)."""
        if self.kernels:
            return fused.silu_mul(gate_up)
        gate, up = gate_up.to(self.dtype).chunk(2, dim=-1)
        return (self.act(gate) * up).to(self.compute)

    def _attend_one(self, q: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> Tensor:
        """Attention of one query per row: ``q`` [b, heads, 1, d] -> [b, heads, 1, d]. The
        query heads that share a key head are that head's queries (no repeated keys, no causal
        mask needed: every cached position is in the past). Two matmuls and a softmax:
        measured 20–35 % faster here than SDPA's CPU flash kernel for 3–9 queries per head."""
        b, nq, _, d = q.shape
        grouped = q.reshape(b, self.kv_heads, nq // self.kv_heads, d)  # head h -> key head h // g
        scores = torch.matmul(grouped, keys.transpose(-1, -2)).mul_(self.scale).add_(mask)
        out = torch.matmul(scores.softmax(-1), values)
        return out.reshape(b, nq, 1, d)
