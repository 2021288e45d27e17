"""Relative paths in a config file name places beside that file, not in the current directory.

``resolve_file_paths(data, base)`` rewrites the path fields of one YAML file's raw mapping
against ``base`` (the file's folder), so ``configs/real-gsm8k.yaml`` can say
``../data/gsm8k/train.jsonl`` and run from any directory. The rewritten paths are absolute, so
the ``config.yaml`` snapshot a run writes into its folder still names the same files on resume.

Which fields (ours):

- data files, always: ``data.public_file``, ``data.dir``, ``clients.K.train_file``,
  ``clients.K.test_file``; the run folder ``allocation_counts_from``;
- a model (``server.model``, ``clients.K.model``) only when written ``./…`` or ``../…``: a bare
  ``org/name`` is a hub id and a bare ``slm-s`` a zoo name, so neither is touched.

Absolute paths and ``~/…`` are kept as written (``~`` expanded). ``key=value`` overrides are not
rewritten: they come from the command line and name paths relative to the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DATA_PATH_KEYS = ("public_file", "dir")  # under data
CLIENT_PATH_KEYS = ("train_file", "test_file")  # under each client
TOP_PATH_KEYS = ("allocation_counts_from",)  # at the top level


def resolve_path(value: Any, base: Path) -> Any:
    """``value`` joined to ``base`` when it is a relative path string; anything else unchanged."""
    if not isinstance(value, str) or not value:
        return value
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    return os.path.normpath(base.resolve() / p)


def _is_explicit_relative(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("./", "../"))


def _resolve_model(role: Any, base: Path) -> None:
    if isinstance(role, dict) and _is_explicit_relative(role.get("model")):
        role["model"] = resolve_path(role["model"], base)


def resolve_file_paths(data: dict[str, Any], base: str | Path) -> dict[str, Any]:
    """Rewrite the path fields of a config file's raw mapping against ``base`` (in place, returned).

    Values of the wrong shape are left alone for :func:`lada.config.build` to report.
    """
    base = Path(base)
    for key in TOP_PATH_KEYS:
        if key in data:
            data[key] = resolve_path(data[key], base)
    section = data.get("data")
    if isinstance(section, dict):
        for key in DATA_PATH_KEYS:
            if key in section:
                section[key] = resolve_path(section[key], base)
    _resolve_model(data.get("server"), base)
    clients = data.get("clients")
    if isinstance(clients, list):
        for client in clients:
            _resolve_model(client, base)
            if isinstance(client, dict):
                for key in CLIENT_PATH_KEYS:
                    if key in client:
                        client[key] = resolve_path(client[key], base)
    return data
