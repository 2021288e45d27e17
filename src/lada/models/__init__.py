"""Models: a local digit-aware tokenizer, a zoo of tiny causal LMs and loading helpers."""

from lada.models.loading import (
    LoraSettings,
    apply_lora,
    convert_gguf_to_hf,
    ensure_pad_token,
    load_causal_lm,
    resolve_device,
    resolve_dtype,
)
from lada.models.tokenizer import build_tokenizer
from lada.models.zoo import ZOO, ModelSpec, build_model, count_params, get_spec

__all__ = [
    "ZOO",
    "LoraSettings",
    "ModelSpec",
    "apply_lora",
    "build_model",
    "build_tokenizer",
    "convert_gguf_to_hf",
    "count_params",
    "ensure_pad_token",
    "get_spec",
    "load_causal_lm",
    "resolve_device",
    "resolve_dtype",
]
