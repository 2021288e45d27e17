"""Run configuration: dataclasses (``schema``), YAML files and ``key=value`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

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

T = TypeVar("T")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """The embedded default (``RunConfig()``), or a YAML file, then dotted overrides.

    Relative paths in the file resolve against the file's folder (:mod:`lada.config.paths`);
    paths in overrides against the current directory. Keys that moved (a host's settings now
    under ``hosts.<name>``) are still read, each with a one-line notice
    (:mod:`lada.config.sections`). Every field is type- and range-checked, and fields are
    checked against each other (:mod:`lada.config.validate`); whether models and files exist
    is checked by :func:`lada.config.validate.check_resources` (``validate(cfg)``), not here.
    Every bad override, key and value is reported at once, one line each, naming the override
    that set it or the file and line it was written on (:mod:`lada.config.locate`)."""
    from lada.config.sections import apply_renames, rename_override
    from lada.config.validate import check_fields, validate

    data = to_dict(RunConfig())
    lines: dict[str, int] = {}
    if path is not None:
        raw = load_yaml(path)
        lines = yaml_key_lines(Path(path).read_text())
        for new, old in apply_renames(raw, f"{path}: ").items():
            if old in lines:
                lines[new] = lines[old]
        data = merge(data, resolve_file_paths(raw, Path(path).parent))
    problems: list[str] = []  # every bad override, key and value, reported at once
    applied: list[tuple[str, str]] = []  # (the override that set a value, as typed)
    for typed in overrides or ():
        for item in rename_override(typed):
            try:
                apply_overrides(data, [item])
                applied.append((item, typed))
            except ConfigError as e:
                problems += str(e).splitlines()
    try:
        cfg = build(RunConfig, data, "", None, check=check_fields)
        validate(cfg, resources=False)
    except ConfigError as e:
        file = str(path) if path is not None else None
        problems += locate(str(e).splitlines(), file, lines, applied)
    if problems:
        raise ConfigError("\n".join(problems))
    return cfg


def load_section(cls: type[T], overrides: list[str], path: str = "") -> T:
    """One config dataclass (e.g. ``OptimConfig`` for ``lada train``) from its defaults and
    ``key=value`` overrides, checked like a run config: every bad override one line."""
    from lada.config.validate import check_fields

    data = to_dict(cls())
    problems: list[str] = []
    applied: list[tuple[str, str]] = []
    for item in overrides:
        try:
            apply_overrides(data, [item])
            applied.append((item, item))
        except ConfigError as e:
            problems += str(e).splitlines()
    try:
        built = build(cls, data, path, None, check=check_fields)
    except ConfigError as e:
        problems += locate(str(e).splitlines(), None, {}, applied)
    if problems:
        raise ConfigError("\n".join(problems))
    return built


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
    "load_section",
    "to_dict",
]
