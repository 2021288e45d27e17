"""Loading causal LMs (local folders, hub ids, GGUF files) with optional LoRA adapters.

``peft`` is imported lazily (it costs ~8 s): only when a ``LoraSettings`` is given.
Padding side is *not* set here: LaDa's batching code builds padded tensors itself
(right padding for training and scoring, left padding for generation).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lada.models.lora_config import LoraSettings as LoraSettings  # re-export (lived here)

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``, ``"bfloat16"``, ``"float16"`` (or short names) -> ``torch.dtype``."""
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    out = getattr(torch, names.get(dtype, dtype), None)
    if not isinstance(out, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return out


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Make sure the tokenizer has a pad token, falling back to EOS (logged)."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad nor an eos token")
        log.info("tokenizer has no pad token: using eos %r for padding", tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def apply_lora(
    model: PreTrainedModel, lora: LoraSettings, seed: int | None = None
) -> PreTrainedModel:
    """Wrap ``model`` in a peft LoRA model: only adapter weights stay trainable.

    peft draws the ``lora_A`` matrices from torch's global random generator; with ``seed`` they
    are drawn from a generator seeded with it instead (the global one is left as it was), so
    the same seed gives the same adapters in every process. Without it they depend on whatever
    state the global generator is in."""
    from peft import LoraConfig, get_peft_model  # lazy: ~8 s import

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    if seed is None:
        return get_peft_model(model, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def load_causal_lm(
    name_or_path: str | Path,
    *,
    gguf_file: str | None = None,
    lora: LoraSettings | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "float32",
    chat_template: str = "auto",
    seed: int | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer; returns ``(model, tokenizer)`` with the model in eval mode.

    ``name_or_path`` is a local folder or a hub id (offline, hub ids fail with transformers' own
    error). ``gguf_file`` names a GGUF file inside that folder (weights are dequantized; such a
    model cannot be ``save_pretrained``: see :func:`convert_gguf_to_hf`). ``dtype`` is ``auto``,
    ``fp32``, ``bf16`` or ``fp16`` (:mod:`lada.accel.precision`); ``chat_template`` ``auto``
    wraps prompts in the tokenizer's chat template when it has one, ``off`` never does
    (:func:`lada.train.batching.use_chat_template`). What generation runs on is the run's
    ``runtime.generator`` (:mod:`lada.accel`).
    ``seed``: the LoRA adapters' initialisation (:func:`apply_lora`).
    """
    from lada.accel.precision import apply_precision, choose_precision

    src = str(name_or_path)
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(src, **extra))
    set_chat_template_mode(tokenizer, chat_template)
    target = resolve_device(device)
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    # the weights' dtype never depends on the size (only CPU autocast does): load in it directly
    load_dtype = choose_precision(dtype, target, 0).weights
    model = AutoModelForCausalLM.from_pretrained(src, dtype=load_dtype, **extra)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    precision = choose_precision(dtype, target, sum(p.numel() for p in model.parameters()))
    if lora is not None:
        model = apply_lora(model, lora, seed)
    apply_precision(model, precision)
    log.info("%s: %s on %s", src, precision.describe(), target)
    model.to(target)
    return model.eval(), tokenizer


def set_chat_template_mode(tokenizer: PreTrainedTokenizerBase, mode: str) -> None:
    """``auto``: prompts go through the tokenizer's chat template when it has one; ``off``: never."""
    if mode not in ("auto", "off"):
        raise ValueError(f"chat_template={mode!r}: expected auto or off")
    tokenizer.lada_chat = mode == "auto" and bool(getattr(tokenizer, "chat_template", None))


def convert_gguf_to_hf(path_dir: str | Path, gguf_file: str, out_dir: str | Path) -> Path:
    """Convert a GGUF model into a normal HF folder (fp32 safetensors + tokenizer files).

    A GGUF-loaded model refuses ``save_pretrained``; rebuilding it from its config without the
    ``quantization_config`` and copying the (dequantized) weights gives a serialisable model.
    Does nothing when ``out_dir`` already holds a converted model. Returns ``out_dir``.
    """
    out = Path(out_dir)
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    tokenizer = AutoTokenizer.from_pretrained(str(path_dir), gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(str(path_dir), gguf_file=gguf_file)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    clean = AutoModelForCausalLM.from_config(config)
    clean.load_state_dict(gguf_model.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    clean.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
