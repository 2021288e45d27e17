"""The run's roles from a RunConfig: the server (LLM, P, filters) and client k (its SLM and
private data), with the configured host and LaDa plug-in. Engines build them through here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lada.config import RunConfig
from lada.federation.client import ClientRole, ClientSettings
from lada.federation.host import Host
from lada.federation.plugin import LadaPlugin
from lada.federation.server import ServerRole, ServerSettings
from lada.runner.setup import RunData, model_loader


def run_host(cfg: RunConfig) -> Host:
    """The configured host framework (``host``, from the registry of :mod:`lada.hosts`), with
    its settings (``hosts.<name>``)."""
    from lada.hosts import get_host

    return get_host(cfg.host, cfg.hosts.get(cfg.host))


def run_plugin(cfg: RunConfig) -> LadaPlugin:
    """LaDa's plug-in points as configured (``plugin: none``: the host alone)."""
    return LadaPlugin.from_config(cfg)


def prepare_zoo_models(cfg: RunConfig, world_cfg: Any) -> None:
    """Pretrain (once, cached) the zoo models this config names, in parallel; fetch (once,
    cached) the real ones (lada.provision.fetch)."""
    from lada.provision.fetch import fetch_models
    from lada.provision.prepare import is_zoo_name, prepare_models

    names = sorted({m.model for m in [cfg.server, *cfg.clients] if is_zoo_name(m.model)})
    prepare_models(names, cfg.prepare, world_cfg)
    fetch_models(sorted({m.model for m in [cfg.server, *cfg.clients]}))


def build_server(cfg: RunConfig, data: RunData) -> ServerRole:
    host = run_host(cfg)
    return ServerRole(
        model_loader(cfg.server, cfg, data.world_cfg, role="server"),
        data.public,
        {k: data.test[k] for k in range(len(cfg.clients))},
        ServerSettings(
            distill=run_plugin(cfg).distill_config(cfg.distill),
            eval=cfg.eval,
            filter=cfg.filter,
            seed=cfg.seed,
            model_name=cfg.server.model,
            slm_name=cfg.clients[0].model if cfg.clients else "slm",
            limits=cfg.limits,
            world=data.world_cfg,
        ),
        # e.g. FedCoLLM distils the averaged (homogeneous) SLM on the server
        load_slm=model_loader(cfg.clients[0], cfg, data.world_cfg, role="client_0")
        if host.server_holds_slm and cfg.clients
        else None,
    )


def build_client(cfg: RunConfig, data: RunData, k: int, state_dir: Path) -> ClientRole:
    """Client k's role: its SLM, its private data, P; its state lives in ``state_dir``."""
    return ClientRole(
        k,
        model_loader(cfg.clients[k], cfg, data.world_cfg, role=f"client_{k}"),
        data.train[k],
        data.test[k],
        data.public,
        ClientSettings(
            local=cfg.local,
            distill=run_plugin(cfg).distill_config(cfg.distill),
            eval=cfg.eval,
            seed=cfg.seed,
            model_name=cfg.clients[k].model,
            limits=cfg.limits,
            rehearse_after_local=run_plugin(cfg).rehearses_after_local(cfg.distill, run_host(cfg)),
        ),
        state_dir,
        host=run_host(cfg),
    )


__all__ = ["build_client", "build_server", "prepare_zoo_models", "run_host", "run_plugin"]
