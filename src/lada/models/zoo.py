"""A zoo of tiny, randomly initialised causal LMs (Llama / Qwen2 configs) for CPU experiments.

Sizes (with a ~500-token vocabulary, tied embeddings):

    slm-xs  llama  h64  L3   ~0.2 M      slm-s  qwen2  h96  L3   ~0.5 M
    slm-m   llama  h128 L3   ~0.85 M     llm-s  qwen2  h160 L3   ~1.3 M
    llm     qwen2  h192 L4   ~2.4 M      llm-xs qwen2  h128 L4   ~1.1 M

The SLMs have three layers and ``llm-xs`` four (docs/testbed.md: the SLMs must be able to learn
2–4-step chains, and the default LLM stays the larger model).

Models are plain ``transformers`` models: ``save_pretrained`` / ``AutoModelForCausalLM`` work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch/transformers load lazily: the zoo's names are read by config checks
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

Family = Literal["llama", "qwen2"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: Family
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = True


ZOO: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec("slm-xs", "llama", 64, 3, 4, 4, 256),
        ModelSpec("slm-s", "qwen2", 96, 3, 4, 4, 384),
        ModelSpec("slm-m", "llama", 128, 3, 4, 4, 512),
        ModelSpec("llm-xs", "qwen2", 128, 4, 4, 4, 512),
        ModelSpec("llm-s", "qwen2", 160, 3, 5, 5, 640),
        ModelSpec("llm", "qwen2", 192, 4, 6, 6, 768),
    ]
}


def get_spec(name_or_spec: str | ModelSpec) -> ModelSpec:
    if isinstance(name_or_spec, ModelSpec):
        return name_or_spec
    if name_or_spec not in ZOO:
        raise KeyError(f"unknown model spec {name_or_spec!r}; known: {sorted(ZOO)}")
    return ZOO[name_or_spec]


def make_config(spec: ModelSpec, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    """The ``transformers`` config for ``spec`` with the tokenizer's vocabulary and special ids."""
    from transformers import LlamaConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[spec.family]
    return cls(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_model(
    spec: str | ModelSpec, tokenizer: PreTrainedTokenizerBase, seed: int = 0
) -> PreTrainedModel:
    """A freshly initialised fp32 model; the same ``seed`` gives the same weights.

    The global torch RNG state is left untouched.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = make_config(get_spec(spec), tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def count_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    params = {id(p): p for p in model.parameters() if p.requires_grad or not trainable_only}
    return sum(p.numel() for p in params.values())
