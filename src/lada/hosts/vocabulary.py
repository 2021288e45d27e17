"""The static part of the logit hosts' vocabulary check (the runtime fingerprint check in
:func:`lada.train.logit_distill.check_same_vocab` is the one that always runs).

:func:`vocabulary_problems` needs no torch (the config check); :func:`check_shared_vocabulary`
also compares the tokenizers of models given as local folders (at the run's start)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lada.utils.errors import ConfigError


def vocabulary_problems(cfg: Any) -> list[tuple[str, Any, str]]:
    """Zoo models share one locally trained tokenizer, which no other model has: a mix of zoo
    and other models is refused, as (key, value, what is wrong) (no torch needed)."""
    from lada.models.zoo import ZOO

    roles = [("server", cfg.server), *((f"clients.{k}", c) for k, c in enumerate(cfg.clients))]
    zoo = [(r, m.model) for r, m in roles if m.model in ZOO]
    other = [(r, m.model) for r, m in roles if m.model not in ZOO]
    if not (zoo and other):
        return []
    return [
        (
            f"{other[0][0]}.model",
            other[0][1],
            f"host {cfg.host} compares logits and needs one shared tokenizer, but "
            f"{zoo[0][0]} ({zoo[0][1]}) is a zoo model and this one is not; token alignment "
            "across tokenizers is not implemented",
        )
    ]


def check_shared_vocabulary(cfg: Any) -> None:
    """Zoo models share one locally trained tokenizer, which no other model has: a mix of zoo
    and other models is refused; models given as local folders are compared by the fingerprint
    of their tokenizer. Hub ids and GGUF files are left to the runtime check."""
    from lada.provision.prepare import is_zoo_name

    roles = [("server", cfg.server), *((f"clients.{k}", c) for k, c in enumerate(cfg.clients))]
    zoo = [(r, m.model) for r, m in roles if is_zoo_name(m.model)]
    other = [(r, m) for r, m in roles if not is_zoo_name(m.model)]
    if zoo and other:
        raise ConfigError(
            f"host {cfg.host} compares logits and needs one shared tokenizer, but "
            f"{zoo[0][0]} ({zoo[0][1]}) is a zoo model and {other[0][0]} ({other[0][1].model}) "
            "is not; token alignment across tokenizers is not implemented"
        )
    prints: dict[str, tuple[str, str]] = {}
    for role, m in other:
        if m.gguf_file or not (Path(m.model) / "tokenizer_config.json").exists():
            continue
        from transformers import AutoTokenizer

        from lada.train.logit_distill import VocabularyMismatchError, vocab_fingerprint

        fp = vocab_fingerprint(AutoTokenizer.from_pretrained(m.model))
        for other_fp, (other_role, other_model) in prints.items():
            if other_fp != fp:
                raise VocabularyMismatchError(
                    f"host {cfg.host} compares logits and needs one shared tokenizer, but "
                    f"{role} ({m.model}) and {other_role} ({other_model}) have different "
                    "vocabularies; token alignment across tokenizers is not implemented"
                )
        prints.setdefault(fp, (role, m.model))


__all__ = ["check_shared_vocabulary"]
