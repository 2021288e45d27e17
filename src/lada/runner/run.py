"""`lada run`: check the config, then run (or resume) it on the configured engine.

The run directory's layout, the round loop, checkpoints and resume are in
:mod:`lada.runner.drive`; the roles in :mod:`lada.runner.roles`; engines (in-process, Flower
simulation) come from the registry of :mod:`lada.engines`, so this module knows none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lada.config import RunConfig
from lada.runner.drive import RunDirError, drive, prepare_run_dir
from lada.runner.roles import build_client, build_server, prepare_zoo_models
from lada.runner.tensorboard import check_report

__all__ = [
    "RunDirError",
    "build_client",
    "build_server",
    "drive",
    "prepare_run_dir",
    "prepare_zoo_models",
    "run",
]


def run(
    cfg: RunConfig | None,
    run_dir: str | Path,
    resume: bool = False,
    console: Any = None,
) -> list[dict[str, Any]]:
    """Run (or resume) a federation on the configured engine; returns all rounds' metrics."""
    from lada.engines import get_engine
    from lada.hosts import check_host_config

    run_dir = Path(run_dir)
    if cfg is not None:  # models, files and the host: before the run directory is made
        from lada.config.validate import validate

        validate(cfg)
        check_host_config(cfg)  # the host's run-time check (e.g. local tokenizers)
        check_report(cfg)
    cfg, last = prepare_run_dir(run_dir, cfg, resume)
    if resume:
        check_host_config(cfg)
        check_report(cfg)
    engine = get_engine(cfg.engine)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    return engine(cfg, run_dir, last, console)
