"""Context vectors x for the filter (spec §3, "Context x").

Spec [default]: the learner's mean-pooled last hidden state of the public question concatenated
with the teacher's (:func:`mean_pooled_hidden` + :func:`pair_context`); alternative: a sentence
embedding model (:class:`SentenceEmbedder`, loaded only from a local path).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [B, T, d] over positions where ``attention_mask`` [B, T] is 1."""
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _encode_batches(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int,
    max_length: int,
    causal: bool,
) -> np.ndarray:
    """Masked-mean last hidden state per text, float32 [N, d], on the model's device.

    Pads on the right (the tokenizer's padding side and pad token are restored afterwards): with
    a causal model the real tokens then never see padding and keep their positions, so a text's
    vector does not depend on its batch.
    """
    device = _model_device(model)
    was_training = model.training
    old_side = tokenizer.padding_side
    old_pad = tokenizer.pad_token
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad token nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.eval()
    out: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(
                    list(texts[start : start + batch_size]),
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                )
                enc = {
                    k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")
                }
                if causal:
                    res = model(**enc, output_hidden_states=True)
                    hidden = res.hidden_states[-1]
                else:
                    hidden = model(**enc).last_hidden_state
                pooled = masked_mean(hidden.float(), enc["attention_mask"])
                out.append(pooled.cpu().numpy().astype(np.float32))
    finally:
        tokenizer.padding_side = old_side
        if old_pad is None:
            tokenizer.pad_token = None
        model.train(was_training)
    if not out:
        return np.zeros((0, int(model.config.hidden_size)), dtype=np.float32)
    return np.concatenate(out)


def mean_pooled_hidden(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int = 64,
    max_length: int = 256,
) -> np.ndarray:
    """Attention-masked mean of a Hugging Face causal LM's last hidden layer, float32 [N, d].

    No grad, ``model.eval()`` during the pass and the previous training mode restored after;
    runs on the model's device. A tokenizer without a pad token pads with its EOS token.
    """
    return _encode_batches(model, tokenizer, texts, batch_size, max_length, causal=True)


def pair_context(learner_feats: np.ndarray, teacher_feats: np.ndarray) -> np.ndarray:
    """x = [learner features, teacher features] per sample (spec [default]), float32."""
    learner_feats = np.asarray(learner_feats, dtype=np.float32)
    teacher_feats = np.asarray(teacher_feats, dtype=np.float32)
    if learner_feats.ndim != 2 or teacher_feats.ndim != 2:
        raise ValueError("features must be 2-D [N, d]")
    if learner_feats.shape[0] != teacher_feats.shape[0]:
        raise ValueError("learner and teacher features must have the same number of rows")
    return np.concatenate([learner_feats, teacher_feats], axis=1)


class SentenceEmbedder:
    """Sentence embeddings from a local checkpoint (e.g. all-MiniLM): plain ``AutoModel``,
    attention-masked mean pooling, L2 normalisation. Never downloads (``local_files_only``)."""

    def __init__(
        self,
        path: str | Path,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        max_length: int = 256,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"sentence-embedding checkpoint not found: {path}")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True)
        if device is not None:
            self.model.to(device)
        self.model.eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 embeddings [N, d]."""
        emb = _encode_batches(
            self.model, self.tokenizer, texts, self.batch_size, self.max_length, causal=False
        )
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.maximum(norms, 1e-12)
