"""The plain host (``host: sft``): clients SFT their SLMs on private data; no public exchange
of its own. With LaDa, the two-way exchange of reasoning paths (the :class:`Host` defaults)."""

from __future__ import annotations

from lada.federation.host import Host
from lada.hosts.registry import register_host


@register_host
class SFTHost(Host):
    name = "sft"
    exchanges_alone = False  # alone: local SFT only


__all__ = ["SFTHost"]
