"""Models: a local digit-aware tokenizer, a zoo of tiny causal LMs and loading helpers.

Names are imported lazily (PEP 562), so that ``lada.models.zoo`` / ``lada.models.lora_config``
load without torch (the CLI validates configs before any heavy import).
"""

from __future__ import annotations

from lada.utils.lazy import lazy_getattr

_EXPORTS = {
    "LoraSettings": "lada.models.lora_config",
    "apply_lora": "lada.models.loading",
    "convert_gguf_to_hf": "lada.models.loading",
    "ensure_pad_token": "lada.models.loading",
    "load_causal_lm": "lada.models.loading",
    "resolve_device": "lada.models.loading",
    "resolve_dtype": "lada.models.loading",
    "build_tokenizer": "lada.models.tokenizer",
    "ZOO": "lada.models.zoo",
    "ModelSpec": "lada.models.zoo",
    "build_model": "lada.models.zoo",
    "count_params": "lada.models.zoo",
    "get_spec": "lada.models.zoo",
}


__getattr__ = lazy_getattr("lada.models", _EXPORTS)


__all__ = sorted(_EXPORTS)
