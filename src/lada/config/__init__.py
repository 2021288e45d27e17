"""Run configuration: dataclasses (``schema``), YAML files and ``key=value`` overrides."""

from __future__ import annotations

from pathlib import Path

from lada.config.locate import locate, yaml_key_lines
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
    not here. Every bad override, key and value is reported at once, one line each, naming the
    override that set it or the file and line it was written on (:mod:`lada.config.locate`)."""
    from lada.config.validate import check_fields, validate

    data = to_dict(RunConfig())
    if path is not None:
        data = merge(data, resolve_file_paths(load_yaml(path), Path(path).parent))
    problems: list[str] = []  # every bad override, key and value, reported at once
    applied = []  # the overrides that set a value (a bad one sets nothing)
    for item in overrides or ():
        try:
            apply_overrides(data, [item])
            applied.append(item)
        except ConfigError as e:
            problems += str(e).splitlines()
    try:
        cfg = build(RunConfig, data, "", None, check=check_fields)
        validate(cfg, resources=False)
    except ConfigError as e:
        lines = yaml_key_lines(Path(path).read_text()) if path is not None else {}
        file = str(path) if path is not None else None
        problems += locate(str(e).splitlines(), file, lines, applied)
    if problems:
        raise ConfigError("\n".join(problems))
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
