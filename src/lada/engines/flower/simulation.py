"""``lada run`` with ``engine: flower-sim``: the run on Flower's simulation engine (Ray).

One virtual SuperNode per configured client (client k = partition-id k); the ServerApp runs in
this process (a thread), the ClientApps in Ray actors (``flower.ray_num_cpus /
flower.client_num_cpus`` of them, each serving any node). The data split and the zoo models are
prepared here first, so actors only read them. Each client keeps its state in
``RUN_DIR/clients/client_k`` exactly as with the in-process engine, and the run directory is
written by the same ``drive`` (resume works the same way).

Environment: telemetry and update checks are off unless the caller set them
(``FLWR_TELEMETRY_ENABLED``, ``FLWR_DISABLE_UPDATE_CHECK``); without ``FLWR_HOME`` Flower's
scratch files go to a temporary directory removed afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lada.config import RunConfig
from lada.runner.metrics_file import read_metrics

_ENV_DEFAULTS = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@contextmanager
def flower_environment(quiet: bool = True):
    """Flower's environment defaults for one simulation; restored afterwards."""
    saved = {k: os.environ.get(k) for k in [*_ENV_DEFAULTS, "FLWR_HOME"]}
    tmp_home = None
    for k, v in _ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    if not os.environ.get("FLWR_HOME"):
        tmp_home = tempfile.mkdtemp(prefix="lada-flwr-home-")
        os.environ["FLWR_HOME"] = tmp_home
    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    if quiet:
        flwr_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        flwr_log.setLevel(level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if tmp_home is not None:
            shutil.rmtree(tmp_home, ignore_errors=True)


def backend_config(cfg: RunConfig) -> dict[str, Any]:
    f = cfg.flower
    init_args: dict[str, Any] = {"include_dashboard": False}
    if f.ray_num_cpus is not None:
        init_args["num_cpus"] = f.ray_num_cpus
    return {
        "client_resources": {"num_cpus": f.client_num_cpus, "num_gpus": f.client_num_gpus},
        "init_args": init_args,
    }


def run_flower_simulation(
    cfg: RunConfig, run_dir: Path, last: int, console: Any = None
) -> list[dict[str, Any]]:
    """Run rounds ``last+1 .. cfg.rounds`` of ``cfg`` on Flower's simulation engine."""
    from lada.engines.flower.client_app import make_client_app
    from lada.engines.flower.server_app import ServerJob, make_server_app
    from lada.runner.roles import build_server, prepare_zoo_models
    from lada.runner.setup import load_run_data

    run_dir = Path(run_dir).resolve()
    t0 = time.perf_counter()
    data = load_run_data(cfg, run_dir)  # the server's view; makes the split in run_dir/data
    prepare_zoo_models(cfg, data.world_cfg)  # once, here, before the actors load them
    job = ServerJob(cfg, run_dir, last, console, data, build_server(cfg, data))
    server_app = make_server_app(lambda _context: job)
    client_app = make_client_app(sim_run_dir=str(run_dir))
    with flower_environment():
        from flwr.simulation import run_simulation

        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=len(cfg.clients),
            backend_config=backend_config(cfg),  # type: ignore[arg-type]
        )
    if console is not None:
        console.print(f"  flower-sim: {time.perf_counter() - t0:.1f}s in all")
    if job.missing_at_start and console is not None:
        console.print(f"[yellow]clients without a node at start: {job.missing_at_start}[/]")
    return read_metrics(run_dir)
