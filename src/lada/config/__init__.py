"""Run configuration: dataclasses (``schema``), YAML files and ``key=value`` overrides."""

from __future__ import annotations

from pathlib import Path

from lada.config.overrides import (
    ConfigError,
    apply_overrides,
    build,
    load_yaml,
    merge,
    to_dict,
)
from lada.config.paths import resolve_file_paths
from lada.config.schema import (
    ClientConfig,
    DataConfig,
    DistillConfig,
    EvalConfig,
    FaultSpec,
    LocalTrainConfig,
    ModelConfig,
    PrepareConfig,
    RunConfig,
)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """The embedded default (``RunConfig()``), or a YAML file, then dotted overrides.

    Relative paths in the file resolve against the file's folder (:mod:`lada.config.paths`);
    paths in overrides against the current directory. Every field is type- and range-checked,
    and fields are checked against each other (:mod:`lada.config.validate`); whether models and
    files exist is checked by :func:`lada.config.validate.check_resources` (``validate(cfg)``),
    not here."""
    from lada.config.validate import check_fields, validate

    data = to_dict(RunConfig())
    if path is not None:
        data = merge(data, resolve_file_paths(load_yaml(path), Path(path).parent))
    if overrides:
        data = apply_overrides(data, list(overrides))
    source = str(path) if path else None
    cfg = build(RunConfig, data, "", source, check=check_fields)
    validate(cfg, resources=False, source=source)
    return cfg


__all__ = [
    "ClientConfig",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "EvalConfig",
    "FaultSpec",
    "LocalTrainConfig",
    "ModelConfig",
    "PrepareConfig",
    "RunConfig",
    "apply_overrides",
    "build",
    "load_config",
    "to_dict",
]
