"""Check a run config before anything heavy happens: value ranges, cross-field consistency,
and that its models and files can be found and read.

A generic walker over the config's dataclasses; the rules live on the classes themselves
(:mod:`lada.utils.rules`: field metadata, ``rules()``, ``relations()``), a plug-in's on its own
settings class (``hosts.<name>``, :mod:`lada.plugins`). Three layers, all torch-free and fast
(the CLI runs them before importing torch):

* :func:`check_fields` — each config dataclass's own fields (ranges, choices), run by
  :func:`lada.config.overrides.build` while the config is built, so a bad value is named by its
  dotted key instead of failing later in a constructor or a training step;
* :func:`check_consistency` — rules across fields (client count, faults, budget vs. |P|, data
  keys the chosen ``data.kind`` does not read) and the chosen host's own
  (``run_problems(cfg)`` of its settings class);
* :func:`check_resources` — models resolve (zoo name, local folder, or a hub id in the local
  cache when offline), data files exist and their first records parse in the configured format.

Every problem is one line ``config key 'KEY' = VALUE: what is wrong; the fix``; all of them are
reported at once (:func:`validate` raises one :class:`ConfigError` listing them), and
:func:`lada.config.locate.locate` prefixes each with the ``file.yaml:LINE`` or override that set
it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lada import plugins
from lada.config.overrides import ConfigError, closest
from lada.utils.rules import (  # noqa: F401  (the rule helpers, importable from here too)
    DTYPES,
    Rule,
    betas,
    device,
    dtype,
    field_rules,
    finite,
    ge,
    gt,
    half_open_range,
    step_range,
    within,
)


def problem(key: str, value: Any, message: str) -> str:
    """One line: ``config key 'KEY' = VALUE: message`` (``option '--x'`` for a CLI flag)."""
    kind = "option" if key.startswith("--") else "config key"
    return f"{kind} '{key}' = {value!r}: {message}"


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def check_fields(cls: type, values: dict[str, Any], path: str) -> list[str]:
    """The problems of one dataclass's field values (a :data:`overrides.FieldCheck`): its
    field rules, then (when those pass) its ``relations(values)``."""
    out = []
    for name, rule in field_rules(cls).items():
        if name in values:
            why = rule(values[name])
            if why:
                out.append(problem(_join(path, name), values[name], why))
    relations = getattr(cls, "relations", None)
    if relations is not None and not out:
        for name, why in relations(values):
            out.append(problem(_join(path, name), values.get(name), why))
    return out


# ---- across fields -------------------------------------------------------------------------

FAULT_TASKS = (
    "local_train",
    "embed",
    "generate",
    "distill",
    "evaluate",
    "score",
    "get_weights",
    "set_weights",
    "logits",
    "distill_logits",
)


def public_size(cfg: Any) -> int | None:
    """|P| when it is known without reading files (synthetic data, or a public range/limit)."""
    d = cfg.data
    n: int | None = None
    if d.kind == "synthetic" and not d.dir:
        n = int(d.split.get("public_size", 1000))
    elif d.kind == "files" and d.public_range:
        n = d.public_range[1] - d.public_range[0]
    if d.public_limit is not None:
        n = d.public_limit if n is None else min(n, d.public_limit)
    return n


def check_consistency(cfg: Any) -> list[str]:
    """Rules that involve several fields of a built RunConfig."""
    out = []
    n = len(cfg.clients)
    if n == 0:
        out.append(problem("clients", [], "needs at least one client"))
    split = dict(cfg.data.split)
    if cfg.data.kind == "synthetic":
        from lada.data.split import SplitConfig

        try:
            SplitConfig.from_overrides({"num_clients": n, **split}).validate()
        except (TypeError, ValueError) as e:
            out.append(problem("data.split", split, str(e)))
        if split.get("num_clients", n) != n:
            out.append(
                problem(
                    "data.split.num_clients",
                    split["num_clients"],
                    f"but {n} clients are configured (clients.0..{n - 1}); drop the key or "
                    "configure as many clients",
                )
            )
    else:
        if not cfg.data.public_file:
            out.append(problem("data.public_file", None, "data.kind=files needs the public set P"))
        for k, c in enumerate(cfg.clients):
            for f in ("train_file", "test_file"):
                if not getattr(c, f):
                    out.append(problem(f"clients.{k}.{f}", None, "data.kind=files needs it"))
    out += unread_data_keys(cfg)
    out += _warmup_problems(cfg)
    out += host_problems(cfg)
    size = public_size(cfg)
    budget = cfg.filter.budget
    if size is not None and budget is not None and budget > size:
        out.append(problem("filter.budget", budget, f"exceeds |P| = {size} public samples"))
    if cfg.allocation_count is not None and size is not None and cfg.allocation_count > size:
        out.append(problem("allocation_count", cfg.allocation_count, f"exceeds |P| = {size}"))
    for i, f in enumerate(cfg.faults):
        if not 0 <= f.client < n:
            out.append(problem(f"faults.{i}.client", f.client, f"no such client (0..{n - 1})"))
        if not 0 <= f.round <= cfg.rounds:
            out.append(problem(f"faults.{i}.round", f.round, f"no such round (0..{cfg.rounds})"))
        if f.task not in FAULT_TASKS:
            near = closest(f.task, FAULT_TASKS)
            hint = f"did you mean {near!r}?" if near else f"tasks: {', '.join(FAULT_TASKS)}"
            out.append(problem(f"faults.{i}.task", f.task, f"unknown task; {hint}"))
    return out


# data.kind -> (data keys, client keys) only the other kind reads, with their unset values
_FILES_ONLY_DATA = {"public_file": None, "public_range": None, "format": "lada", "fields": {}}
_FILES_ONLY_CLIENT = {
    "train_file": None,
    "train_range": None,
    "test_file": None,
    "test_range": None,
}
_SYNTHETIC_ONLY_DATA = {"split": {}, "dir": None}


def unread_data_keys(cfg: Any) -> list[str]:
    """A data key that the chosen ``data.kind`` does not read is a mistake, not a no-op: a
    training file named under synthetic data would be silently ignored."""
    d, out = cfg.data, []
    if d.kind == "synthetic":
        unread = [
            (f"data.{k}", getattr(d, k)) for k, v in _FILES_ONLY_DATA.items() if getattr(d, k) != v
        ]
        for i, c in enumerate(cfg.clients):
            unread += [
                (f"clients.{i}.{k}", getattr(c, k))
                for k, v in _FILES_ONLY_CLIENT.items()
                if getattr(c, k) != v
            ]
        fix = "set data.kind=files to read files (docs/run-dir.md), or drop the key"
    else:
        unread = [
            (f"data.{k}", getattr(d, k))
            for k, v in _SYNTHETIC_ONLY_DATA.items()
            if getattr(d, k) != v
        ]
        fix = "it applies to data.kind=synthetic; drop the key"
    for key, value in unread:
        out.append(problem(key, value, f"data.kind={d.kind} does not read it; {fix}"))
    return out


def host_problems(cfg: Any) -> list[str]:
    """The chosen host's own checks of the whole config (``run_problems(cfg)`` of its settings
    class, torch-free), e.g. FedCoLLM's homogeneous SLMs."""
    out = []
    if cfg.host_transfer == "all" and cfg.host not in plugins.logit_hosts():
        out.append(
            problem(
                "host_transfer",
                "all",
                f"keeps a logit host's own transfer on all of P beside LaDa's path step; host "
                f"{cfg.host}'s public transfer is the path step itself (use host_transfer=picks, "
                f"or allocation=all for all of P); logit hosts: {', '.join(plugins.logit_hosts())}",
            )
        )
    if cfg.allocation_counts_from is not None and (
        cfg.plugin != "lada" or cfg.allocation != "random_teachable"
    ):
        out.append(
            problem(
                "allocation_counts_from",
                cfg.allocation_counts_from,
                "sets how many random_teachable picks (count-matched to another run); it needs "
                f"plugin=lada and allocation=random_teachable, not plugin={cfg.plugin}, "
                f"allocation={cfg.allocation}",
            )
        )
    cls = plugins.host_settings_class(cfg.host)
    check = getattr(cls, "run_problems", None)
    if check is not None:
        out += [problem(key, value, why) for key, value, why in check(cfg)]
    return out


def _warmup_problems(cfg: Any) -> list[str]:
    """A warm-up needs the synthetic world and a real checkpoint (zoo models are pretrained on
    the world by ``prepare`` already)."""
    from lada.models.zoo import ZOO

    out = []
    roles = [("server", cfg.server)] + [(f"clients.{k}", c) for k, c in enumerate(cfg.clients)]
    for key, role in roles:
        if role.warmup is None:
            continue
        if cfg.data.kind != "synthetic":
            out.append(
                problem(
                    f"{key}.warmup",
                    {"samples": role.warmup.samples},
                    "warms a model up on the synthetic world's general facts; "
                    "data.kind=files has no world (drop the key)",
                )
            )
        if role.model in ZOO:
            out.append(
                problem(
                    f"{key}.warmup",
                    {"samples": role.warmup.samples},
                    f"{role.model!r} is a zoo model, pretrained on the world by prepare "
                    "already; warm-ups are for real checkpoints (drop the key)",
                )
            )
        steps = role.warmup.steps
        if cfg.data.kind == "synthetic" and len(steps) == 2 and steps[1] > _entities(cfg):
            out.append(
                problem(
                    f"{key}.warmup.steps",
                    steps,
                    f"a question names at most {_entities(cfg)} entities",
                )
            )
    return out


def _entities(cfg: Any) -> int:
    from lada.data.split import SplitConfig

    try:
        return SplitConfig.from_overrides(dict(cfg.data.split)).synthetic().entities_per_domain
    except (TypeError, ValueError):
        return 10**9  # the split's own problem is reported elsewhere


# ---- models and files ------------------------------------------------------------------------


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``~/.cache/huggingface/hub``), found without importing huggingface_hub (fast)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    home = os.environ.get("HF_HOME") or str(Path(xdg) / "huggingface")
    return Path(home).expanduser() / "hub"


def _in_hub_cache(repo_id: str, filename: str) -> bool:
    snapshots = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.glob(f"*/{filename}"))


def model_problem(key: str, name: str, gguf_file: str | None = None) -> str | None:
    """Why ``name`` (a role's ``model``) cannot be loaded, or None: a zoo name, a local folder
    with a config (or the GGUF file), or a hub id (when offline: one in the local hub cache)."""
    from lada.models.zoo import ZOO
    from lada.provision.fetch import parse_real_name

    if name in ZOO or parse_real_name(name) is not None:  # real names: fetched on first use
        return None
    zoo_hint = closest(name, ZOO)
    also = f"did you mean the zoo model '{zoo_hint}'? " if zoo_hint else ""
    zoo_names = f"zoo models: {', '.join(ZOO)}"
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            return problem(key, name, "is a file; give the model's folder (config.json inside)")
        if gguf_file:
            if not (p / gguf_file).is_file():
                return problem(key, name, f"has no GGUF file {gguf_file!r} (gguf_file)")
        elif not (p / "config.json").is_file():
            return problem(
                key,
                name,
                "folder has no config.json: not a save_pretrained model folder "
                "(a run's checkpoint? export it first: lada export RUN_DIR --round N ...)",
            )
        return None
    if _looks_like_path(name):
        return problem(key, name, f"no such folder; {also}{zoo_names}")
    cached = _in_hub_cache(name, gguf_file or "config.json")
    if not cached and zoo_hint and "/" not in name:
        return problem(key, name, f"not a zoo model or local folder; {also}{zoo_names}")
    if _offline() and not cached:
        return problem(
            key,
            name,
            f"not a zoo model or local folder, and offline (HF_HUB_OFFLINE=1): hub id not in "
            f"the cache; {also}{zoo_names}; or download it once: "
            f"HF_HUB_OFFLINE=0 hf download {name}",
        )
    return None


def _file_problem(key: str, path: str | None, what: str = "file") -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.exists():
        return problem(key, path, f"no such {what}")
    if what == "file" and not p.is_file():
        return problem(key, path, "is not a file")
    return None


def data_file_problem(
    key: str, path: str, fmt: str, fields: dict[str, Any], format_key: str = "data.format"
) -> str | None:
    """Why data file ``path`` cannot be read in format ``fmt``: its first records are parsed
    (an empty file, a CSV or another format fails there), or None."""
    from lada.data.errors import DataError
    from lada.data.loaders import load_dataset

    try:
        load_dataset(path, fmt, head=HEAD_RECORDS, **fields)  # type: ignore[arg-type]
    except DataError as e:
        hint = ""
        if e.line == 1 and "invalid JSON" in e.message:
            hint = " (a data file holds one JSON object per line: JSONL, not CSV or plain text)"
        return problem(key, path, f"{e}{hint}; format {fmt} ({format_key})")
    except (TypeError, ValueError) as e:  # field options the format does not take
        return problem(key, path, f"cannot be read as format {fmt}: {e}")
    return None


HEAD_RECORDS = 64  # records of each data file parsed by the up-front check (the rest at load)


def check_resources(cfg: Any) -> list[str]:
    """Models resolve, data files/folders exist and each data file's first records parse."""
    out = []
    roles = [("server", cfg.server), *((f"clients.{k}", c) for k, c in enumerate(cfg.clients))]
    for role, mc in roles:
        out.append(model_problem(f"{role}.model", mc.model, mc.gguf_file))
    if cfg.allocation_counts_from is not None:
        out.append(_file_problem("allocation_counts_from", cfg.allocation_counts_from, "folder"))
    d = cfg.data
    if d.kind == "synthetic" and d.dir:
        out.append(_file_problem("data.dir", d.dir, "folder"))
        if out[-1] is None and not (Path(d.dir) / "manifest.json").is_file():
            out.append(
                problem(
                    "data.dir", d.dir, "has no manifest.json (make it: lada data make --out DIR)"
                )
            )
    if d.kind == "files":
        files = [("data.public_file", d.public_file)]
        for k, c in enumerate(cfg.clients):
            files += [(f"clients.{k}.train_file", c.train_file)]
            files += [(f"clients.{k}.test_file", c.test_file)]
        seen: set[str] = set()
        for key, path in files:
            missing = _file_problem(key, path)
            out.append(missing)
            if missing is None and path is not None and path not in seen:
                seen.add(path)  # each file is read once, named by its first key
                out.append(data_file_problem(key, path, d.format, dict(d.fields)))
    return [p for p in out if p]


def raise_problems(problems: Iterable[str], source: str | None = None) -> None:
    lines = [f"{source}: {p}" if source else p for p in problems]
    if lines:
        raise ConfigError("\n".join(lines))


def validate(cfg: Any, resources: bool = True, source: str | None = None) -> None:
    """Raise one ConfigError listing every problem of a built RunConfig (fields are checked
    while building; this adds cross-field rules and the host's own config checks and, with
    ``resources``, models and files). Imports no torch; a host's run-time check
    (:meth:`lada.federation.host.Host.check`) is the runner's, at the run's start."""
    problems = check_consistency(cfg)
    if resources:
        problems += check_resources(cfg)
    raise_problems(problems, source)


def changed_keys(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """The dotted keys whose values differ between two plain config dicts: (key, old, new)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += changed_keys(old.get(k), new.get(k), _join(path, k))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            c
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for c in changed_keys(a, b, _join(path, i))
        ]
    return [] if old == new else [(path, old, new)]
