"""Host frameworks LaDa plugs into (spec §6), selected by ``RunConfig.host``.

Each host is one :class:`lada.federation.host.Host` subclass in its own module, registered by
name (:mod:`lada.hosts.registry`); nothing outside its module knows it (``docs/hosts.md``).

- ``sft`` (:mod:`lada.hosts.sft`): the plain host: clients SFT on private data; with LaDa, the
  two-way path exchange.
- ``fedcot`` (:mod:`lada.hosts.fedcot`): FedCoT / distilling step-by-step: the LLM writes
  rationales for public questions and each SLM learns two tasks with separate inputs, predict
  (answer) and explain (rationale), with (1 − α)·L_label + α·L_rationale, and answers with the
  predict prefix; one direction only (LLM → SLM), the LLM does not learn.
- ``fedcollm`` (:mod:`lada.hosts.fedcollm`): FedCoLLM: after the local step the server FedAvgs
  the (homogeneous) SLMs' trainable weights (:mod:`lada.hosts.fedavg`), then distils the LLM and
  the averaged SLM mutually on P on the server (LM + 1.0·KL over top-k logits) and sends the
  distilled SLM weights to the clients.
- ``fedmkt`` (:mod:`lada.hosts.fedmkt`): FedMKT: clients SFT on private data; both sides
  exchange top-k logits and CE on P's gold texts and distil mutually, per sample only from a
  teacher with a lower CE (min-CE), with 0.9·LM + 0.1·distill. Logits need one shared tokenizer
  (checked by vocabulary fingerprint; no token alignment).

LaDa enters a host only through the spec's three plug-in points
(:class:`lada.federation.plugin.LadaPlugin`, chosen by ``plugin``): (1) the host's public
transfer is restricted, per direction, to the allocation's picks (``allocation``: the LaDa
filter or a baseline), (2) λ·L_CD is added to the learner's loss, (3) after the step, rewards
update the filters. With ``plugin: none`` the host transfers all of P in each of its directions
with λ = 0 and no filter (the logit hosts then exchange no paths at all). ``host_transfer: all``
(ours, logit hosts only) departs from point (1): the host's logit transfer stays on all of P,
as alone, and LaDa's path step runs on the picks after it.
"""

from __future__ import annotations

from typing import Any

from lada.hosts.registry import BUILTIN_HOSTS, get_host, host_class, host_names, register_host


def host_directions(host: str) -> tuple[str, ...]:
    """The public-transfer directions a host has (S: LLM → SLM, L: SLM → LLM)."""
    return host_class(host).directions


def logit_hosts() -> tuple[str, ...]:
    """The registered hosts that compare logits (one vocabulary needed)."""
    return tuple(h for h in host_names() if host_class(h).compares_logits)


def check_host_config(cfg: Any) -> None:
    """The host's run-time check of a config (:meth:`lada.federation.host.Host.check`, e.g. the
    tokenizers of local model folders), after the config check (:func:`lada.config.validate.
    validate`, which already ran the host's settings checks); an unknown host is refused."""
    from lada.hosts.registry import UnknownHostError
    from lada.utils.errors import ConfigError

    try:
        host = get_host(cfg.host, getattr(cfg, "hosts", {}).get(cfg.host))
    except UnknownHostError as e:
        raise ConfigError(f"host: {e}") from None
    host.check(cfg)


__all__ = [
    "BUILTIN_HOSTS",
    "check_host_config",
    "get_host",
    "host_class",
    "host_directions",
    "host_names",
    "logit_hosts",
    "register_host",
]
