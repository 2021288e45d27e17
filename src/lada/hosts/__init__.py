"""Host frameworks LaDa plugs into (spec §6), selected by ``RunConfig.host``.

- ``sft``: the plain host: clients SFT on private data; with LaDa, the two-way path exchange.
- ``fedcot``: FedCoT / distilling step-by-step: the LLM writes rationales for public questions
  and each SLM trains on α·L_rationale + (1 − α)·L_label (:mod:`lada.hosts.fedcot`); one
  direction only (LLM → SLM), the LLM does not learn.
- ``fedcollm``: FedCoLLM: after the local step the server FedAvgs the (homogeneous) SLMs'
  trainable weights (:mod:`lada.hosts.fedavg`), then distils the LLM and the averaged SLM
  mutually on P on the server (LM + 1.0·KL over top-k logits, :mod:`lada.hosts.fedcollm`) and
  sends the distilled SLM weights to the clients.
- ``fedmkt``: FedMKT: clients SFT on private data; both sides exchange top-k logits and CE on
  P's gold texts and distil mutually, per sample only from a teacher with a lower CE
  (min-CE), with 0.9·LM + 0.1·distill (:mod:`lada.hosts.fedmkt`). Logits need one shared
  tokenizer (checked by vocabulary fingerprint; no token alignment).

LaDa enters a host only through the spec's three plug-in points, chosen by ``plugin``:
(1) the host's public transfer is restricted, per direction, to the allocation's picks
(``allocation``: the LaDa filter or a baseline), (2) λ·L_CD is added to the learner's loss,
(3) after the step, rewards update the filters. With ``plugin: none`` the host transfers all
of P in each of its directions with λ = 0 and no filter (the logit hosts then exchange no
paths at all). ``host_transfer: all`` (ours, logit hosts only) departs from point (1): the
host's logit transfer stays on all of P, as alone, and LaDa's path step runs on the picks
after it.
"""

from __future__ import annotations

from typing import Any

HOSTS = ("sft", "fedcot", "fedcollm", "fedmkt")
LOGIT_HOSTS = ("fedcollm", "fedmkt")  # hosts that compare logits: one vocabulary needed


def host_directions(host: str) -> tuple[str, ...]:
    """The public-transfer directions a host has (S: LLM → SLM, L: SLM → LLM)."""
    if host == "fedcot":
        return ("S",)
    if host in ("sft", "fedcollm", "fedmkt"):
        return ("S", "L")
    raise ValueError(f"unknown host {host!r} (known: {', '.join(HOSTS)})")


def host_exchanges(host: str, plugin: str) -> bool:
    """Whether a round has a public exchange at all (the plain SFT host alone has none)."""
    return plugin == "lada" or host != "sft"


def check_host_config(cfg: Any) -> None:
    """Fail early on host/config combinations a host cannot run."""
    from lada.config.overrides import ConfigError

    host_directions(cfg.host)
    if getattr(cfg, "host_transfer", "picks") == "all" and cfg.host not in LOGIT_HOSTS:
        raise ConfigError(
            f"host_transfer=all keeps a logit host's own transfer on all of P beside LaDa's "
            f"path step; host {cfg.host}'s public transfer is the path step itself (use "
            f"host_transfer=picks, or allocation=all for all of P); logit hosts: "
            f"{', '.join(LOGIT_HOSTS)}"
        )
    if cfg.host in LOGIT_HOSTS:
        check_shared_vocabulary(cfg)
    if cfg.host == "fedcollm":
        models = {(c.model, c.gguf_file, repr(c.lora)) for c in cfg.clients}
        if len(models) > 1:
            raise ConfigError(
                "host fedcollm averages SLM weights (FedAvg) and needs homogeneous SLMs: "
                f"all clients must use the same model, got {sorted(m[0] for m in models)}"
            )


def check_shared_vocabulary(cfg: Any) -> None:
    """The static part of the logit hosts' vocabulary check (the runtime fingerprint check in
    :func:`lada.train.logit_distill.check_same_vocab` is the one that always runs).

    Zoo models share one locally trained tokenizer, which no other model has: a mix of zoo and
    other models is refused; models given as local folders are compared by the fingerprint of
    their tokenizer. Hub ids and GGUF files are left to the runtime check."""
    from pathlib import Path

    from lada.config.overrides import ConfigError
    from lada.models.prepare import is_zoo_name

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
