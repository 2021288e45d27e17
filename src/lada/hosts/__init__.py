"""Host frameworks LaDa plugs into (spec §6), selected by ``RunConfig.host``.

- ``sft``: the plain host: clients SFT on private data; with LaDa, the two-way path exchange.
- ``fedcot``: FedCoT / distilling step-by-step: the LLM writes rationales for public questions
  and each SLM trains on α·L_rationale + (1 − α)·L_label (:mod:`lada.hosts.fedcot`); one
  direction only (LLM → SLM), the LLM does not learn.
- ``fedcollm``: FedCoLLM: after the local step the server FedAvgs the (homogeneous) SLMs'
  trainable weights (:mod:`lada.hosts.fedavg`), then LLM ↔ SLM mutual distillation on P.

LaDa enters a host only through the spec's three plug-in points, chosen by ``plugin``:
(1) the host's public transfer is restricted, per direction, to the allocation's picks
(``allocation``: the LaDa filter or a baseline), (2) λ·L_CD is added to the learner's loss,
(3) after the step, rewards update the filters. With ``plugin: none`` the host transfers all
of P in each of its directions with λ = 0 and no filter.
"""

from __future__ import annotations

from typing import Any

HOSTS = ("sft", "fedcot", "fedcollm")


def host_directions(host: str) -> tuple[str, ...]:
    """The public-transfer directions a host has (S: LLM → SLM, L: SLM → LLM)."""
    if host == "fedcot":
        return ("S",)
    if host in ("sft", "fedcollm"):
        return ("S", "L")
    raise ValueError(f"unknown host {host!r} (known: {', '.join(HOSTS)})")


def host_exchanges(host: str, plugin: str) -> bool:
    """Whether a round has a public exchange at all (the plain SFT host alone has none)."""
    return plugin == "lada" or host != "sft"


def check_host_config(cfg: Any) -> None:
    """Fail early on host/config combinations a host cannot run."""
    from lada.config.overrides import ConfigError

    host_directions(cfg.host)
    if cfg.host == "fedcollm":
        models = {(c.model, c.gguf_file, repr(c.lora)) for c in cfg.clients}
        if len(models) > 1:
            raise ConfigError(
                "host fedcollm averages SLM weights (FedAvg) and needs homogeneous SLMs: "
                f"all clients must use the same model, got {sorted(m[0] for m in models)}"
            )
