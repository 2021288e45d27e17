"""The ServerApp: a thin shim that runs ``lada.runner.drive.drive`` on a :class:`FlowerTransport`.

In a ``flwr run`` deployment it reads what to run from the run config (``[tool.flwr.app.config]``
of ``flower_app/pyproject.toml``, overridden with ``flwr run --run-config``); paths are on the
machine of the SuperLink (where the ServerApp runs):

``config``     the run config (YAML) for a new run (ignored with ``resume``)
``run-dir``    the run directory, laid out as by ``lada run`` (metrics.jsonl, checkpoints/, ...)
``resume``     continue the run in ``run-dir`` from its last complete round
``overrides``  optional dotted ``key=value`` overrides, space separated

In simulation ``lada.engines.flower.simulation`` hands it a prepared job instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

log = logging.getLogger("lada.flower")


@dataclass
class ServerJob:
    """What the ServerApp runs: a config, its run directory and the rounds already done."""

    cfg: Any  # RunConfig
    run_dir: Path
    last: int  # last complete round (-1: none)
    console: Any = None
    data: Any = None  # RunData (loaded here when None)
    server: Any = None  # ServerRole (built here when None)
    records: list[dict[str, Any]] = field(default_factory=list)  # filled by serve()
    missing_at_start: list[int] = field(default_factory=list)


def job_from_run_config(run_config: dict[str, Any]) -> ServerJob:
    from lada.config import load_config
    from lada.runner.drive import prepare_run_dir

    run_dir = str(run_config.get("run-dir", "")).strip()
    if not run_dir:
        raise ValueError("run config: set run-dir (flwr run --run-config 'run-dir=\"/abs/dir\"')")
    resume = bool(run_config.get("resume", False))
    cfg = None
    if not resume:
        path = str(run_config.get("config", "")).strip() or None
        overrides = str(run_config.get("overrides", "")).split()
        cfg = load_config(path, overrides)
    cfg, last = prepare_run_dir(Path(run_dir).expanduser(), cfg, resume)
    from rich.console import Console

    return ServerJob(cfg, Path(run_dir).expanduser(), last, console=Console())


def serve(grid: Grid, job: ServerJob) -> list[dict[str, Any]]:
    """Discover the clients' nodes and run the remaining rounds of ``job``."""
    from lada.engines.flower.client_app import client_fingerprint
    from lada.engines.flower.transport import FlowerTransport
    from lada.runner.drive import drive
    from lada.runner.roles import build_server
    from lada.runner.setup import load_run_data

    cfg = job.cfg
    data = job.data if job.data is not None else load_run_data(cfg, job.run_dir)
    server = job.server if job.server is not None else build_server(cfg, data)
    transport = FlowerTransport(
        grid,
        len(cfg.clients),
        timeout_s=cfg.flower.timeout_s,
        client_timeouts={k: c.timeout_s for k, c in enumerate(cfg.clients)},
        fingerprints={k: client_fingerprint(cfg, k) for k in range(len(cfg.clients))},
        pull_interval_s=cfg.flower.pull_interval_s,
        rejoin_wait_s=cfg.flower.rejoin_wait_s,
        max_message_bytes=cfg.limits.max_message_bytes,
        client_nodes=cfg.flower.client_nodes,
    )
    job.missing_at_start = transport.wait_for_clients(cfg.flower.wait_for_clients_s)
    if job.missing_at_start:
        msg = f"starting without clients {job.missing_at_start}: no SuperNode answered for them"
        log.warning(msg)
        if job.console is not None:
            job.console.print(f"[yellow]{msg}[/]")
    job.records = drive(cfg, job.run_dir, server, transport, job.last, data.domains, job.console)
    return job.records


def make_server_app(job_fn: Callable[[Context], ServerJob] | None = None) -> ServerApp:
    """The ServerApp; ``job_fn`` gives the job (default: read it from the run config)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        job = (
            job_fn(context) if job_fn is not None else job_from_run_config(dict(context.run_config))
        )
        serve(grid, job)

    return app


app = make_server_app()  # `flwr run` deployments: [tool.flwr.app.components] serverapp
