"""Check a run config before anything heavy happens: value ranges, cross-field consistency,
and that its models and files can be found.

Three layers, all torch-free and fast (the CLI runs them before importing torch):

* :func:`check_fields` — each config dataclass's own fields (ranges, choices), run by
  :func:`lada.config.overrides.build` while the config is built, so a bad value is named by its
  dotted key instead of failing later in a constructor or a training step;
* :func:`check_consistency` — rules across fields (client count, faults, budget vs. |P|);
* :func:`check_resources` — models resolve (zoo name, local folder, or a hub id in the local
  cache when offline) and data files exist.

Every problem is one line ``config key 'KEY' = VALUE: what is wrong; the fix``; all of them are
reported at once (:func:`validate` raises one :class:`ConfigError` listing them).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lada.config.overrides import ConfigError, closest

Rule = Callable[[Any], str | None]  # value -> what is wrong (None: fine)


# ---- rules -------------------------------------------------------------------------------


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def ge(lo: float, none_ok: bool = False, why: str = "") -> Rule:
    def rule(v: Any) -> str | None:
        if v is None and none_ok:
            return None
        if not _number(v) or not math.isfinite(v) or v < lo:
            return f"must be >= {lo:g}" + (" or null" if none_ok else "") + why
        return None

    return rule


def gt(lo: float, none_ok: bool = False, why: str = "") -> Rule:
    def rule(v: Any) -> str | None:
        if v is None and none_ok:
            return None
        if not _number(v) or not math.isfinite(v) or v <= lo:
            return f"must be > {lo:g}" + (" or null" if none_ok else "") + why
        return None

    return rule


def within(lo: float, hi: float, hi_open: bool = False, none_ok: bool = False) -> Rule:
    def rule(v: Any) -> str | None:
        if v is None and none_ok:
            return None
        bad = not _number(v) or not math.isfinite(v) or v < lo or (v >= hi if hi_open else v > hi)
        if bad:
            return f"must lie in [{lo:g}, {hi:g}{')' if hi_open else ']'}" + (
                " or be null" if none_ok else ""
            )
        return None

    return rule


def finite(v: Any) -> str | None:
    return None if _number(v) and math.isfinite(v) else "must be a finite number"


def half_open_range(v: Any) -> str | None:
    if v is None:
        return None
    if len(v) != 2 or v[0] < 0 or v[1] <= v[0]:
        return "must be [start, stop) with 0 <= start < stop"
    return None


def step_range(v: Any) -> str | None:
    if len(v) != 2 or not all(isinstance(x, int) for x in v) or not 1 <= v[0] <= v[1]:
        return "must be [lo, hi] reasoning steps with 1 <= lo <= hi, e.g. [1, 4]"
    return None


def betas(v: Any) -> str | None:
    if len(v) != 2 or any(not (_number(b) and 0.0 <= b < 1.0) for b in v):
        return "must be two numbers in [0, 1), e.g. [0.9, 0.95]"
    return None


DTYPES = ("auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16", "half")


def dtype(v: Any) -> str | None:
    if v in DTYPES:
        return None
    near = closest(str(v), DTYPES)
    return f"must be one of {', '.join(DTYPES)}" + (f"; did you mean {near!r}?" if near else "")


def device(v: Any) -> str | None:
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(v)):
        return None
    return "must be auto, cpu, mps, cuda or cuda:N"


_OPTIM: dict[str, Rule] = {
    "lr": gt(0),
    "weight_decay": ge(0),
    "betas": betas,
    "warmup_steps": ge(0),
    "warmup_ratio": within(0, 1, none_ok=True),
    "min_lr_ratio": within(0, 1),
    "grad_clip": gt(0, none_ok=True),
    "batch_size": ge(1),
    "epochs": ge(0),
    "max_steps": ge(1, none_ok=True),
    "steps_cap": ge(1, none_ok=True),
    "seed": ge(0),
    "max_length": ge(2),
}
_MODEL: dict[str, Rule] = {"dtype": dtype, "device": device}


def host_name(v: Any) -> str | None:
    """A host of the registry (lada.hosts.registry names them without importing any)."""
    from lada.hosts.registry import host_names

    names = host_names()
    if v in names:
        return None
    near = closest(str(v), names)
    return "unknown host; " + (f"did you mean {near!r}?" if near else f"hosts: {', '.join(names)}")


# class name -> field -> rule (class names, so that this module imports no model code)
FIELD_RULES: dict[str, dict[str, Rule]] = {
    "RunConfig": {
        "seed": ge(0),
        "rounds": ge(1, why=" (rounds to run after the base evaluation)"),
        "threads": ge(1, none_ok=True),
        "allocation_count": ge(1, none_ok=True),
        "host": host_name,
    },
    "ModelConfig": _MODEL,
    "ClientConfig": {
        **_MODEL,
        "timeout_s": gt(0, none_ok=True),
        "train_range": half_open_range,
        "test_range": half_open_range,
    },
    "WarmupConfig": {"samples": ge(1), "steps": step_range},
    "LoraSettings": {"r": ge(1), "alpha": gt(0), "dropout": within(0, 1, hi_open=True)},
    "OptimConfig": _OPTIM,
    "DataConfig": {
        "public_range": half_open_range,
        "public_limit": ge(1, none_ok=True),
        "train_limit": ge(1, none_ok=True),
        "test_limit": ge(1, none_ok=True),
    },
    "DistillConfig": {
        "lambda_cd": ge(0),
        "beta": gt(0),
        "llm_replay": ge(0),
        "slm_replay": ge(0),
        "llm_memory": ge(0),
        "boundary_quantile": within(0, 1),
        "boundary_reference": ge(2, why=" (the threshold compares reference questions)"),
        "consistency_samples": ge(1),
        "consistency_agree": ge(0),
        "consistency_temperature": gt(0),
        "sft_weight": ge(0),
        "fedcot_alpha": within(0, 1),
        "top_k": ge(1),
        "fedmkt_lm_weight": ge(0),
        "fedmkt_distill_weight": ge(0),
        "fedcollm_kl_weight": ge(0),
        "max_new_tokens": ge(1),
        "gen_batch_size": ge(1),
    },
    "EvalConfig": {
        "max_new_tokens": ge(1),
        "batch_size": ge(1),
        "limit": ge(1, none_ok=True, why=" (null: every test sample)"),
    },
    "FilterConfig": {
        "hidden": ge(1),
        "num_layers": ge(2, why=" (f1 needs a hidden layer)"),
        "epochs": ge(0),
        "lr": gt(0),
        "batch_size": ge(1),
        "threshold": finite,
        "budget": ge(1, none_ok=True, why=" (null: no cap)"),
        "min_select": ge(0),
        "cold_start_clusters": ge(1),
        "cold_start_fraction": within(0, 1),
        "cold_start_n_init": ge(1),
        "alpha": within(0, 1),
        "seed": ge(0),
        "max_history": ge(1, none_ok=True),
        "unteachable_reward": within(0, 1, none_ok=True),
    },
    "PrepareConfig": {
        "vocab_size": ge(260, why=" (256 bytes + 4 special tokens)"),
        "tokenizer_corpus": ge(1),
        "llm_corpus": ge(1),
        "llm_steps": ge(1),
        "llm_lr": gt(0),
        "slm_corpus": ge(1),
        "slm_max_steps_per_question": ge(1),
        "slm_steps": ge(1),
        "slm_lr": gt(0),
        "batch_size": ge(1),
        "seed": ge(0),
        "workers": ge(1),
    },
    "FaultSpec": {"client": ge(0), "round": ge(0), "delay_s": ge(0)},
    "LimitsConfig": {
        "max_message_bytes": ge(1024, why=" (bytes; a message's header alone takes ~100)"),
        "max_path_chars": ge(1),
        "max_feature_dim": ge(1),
        "max_top_k": ge(1),
    },
    "FlowerConfig": {
        "client_num_cpus": gt(0),
        "client_num_gpus": ge(0),
        "ray_num_cpus": ge(1, none_ok=True),
        "timeout_s": gt(0, none_ok=True),
        "wait_for_clients_s": ge(0),
        "rejoin_wait_s": ge(0),
        "pull_interval_s": gt(0),
    },
}


def problem(key: str, value: Any, message: str) -> str:
    """One line: ``config key 'KEY' = VALUE: message`` (``option '--x'`` for a CLI flag)."""
    kind = "option" if key.startswith("--") else "config key"
    return f"{kind} '{key}' = {value!r}: {message}"


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def check_fields(cls: type, values: dict[str, Any], path: str) -> list[str]:
    """The problems of one dataclass's field values (a :data:`overrides.FieldCheck`)."""
    rules: dict[str, Rule] = {}
    for klass in reversed(cls.__mro__):
        rules.update(FIELD_RULES.get(klass.__name__, {}))
    out = []
    for name, rule in rules.items():
        if name in values:
            why = rule(values[name])
            if why:
                out.append(problem(_join(path, name), values[name], why))
    if cls.__name__ == "FilterConfig":
        budget, least = values.get("budget"), values.get("min_select", 1)
        if budget is not None and not out and least > budget:
            out.append(
                problem(_join(path, "min_select"), least, f"cannot exceed budget ({budget})")
            )
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
    out += _warmup_problems(cfg)
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


def check_resources(cfg: Any) -> list[str]:
    """Models resolve and data files/folders exist (no file is read)."""
    out = []
    roles = [("server", cfg.server), *((f"clients.{k}", c) for k, c in enumerate(cfg.clients))]
    for role, mc in roles:
        out.append(model_problem(f"{role}.model", mc.model, mc.gguf_file))
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
        out.append(_file_problem("data.public_file", d.public_file))
        for k, c in enumerate(cfg.clients):
            out.append(_file_problem(f"clients.{k}.train_file", c.train_file))
            out.append(_file_problem(f"clients.{k}.test_file", c.test_file))
    return [p for p in out if p]


def raise_problems(problems: Iterable[str], source: str | None = None) -> None:
    lines = [f"{source}: {p}" if source else p for p in problems]
    if lines:
        raise ConfigError("\n".join(lines))


def validate(cfg: Any, resources: bool = True, source: str | None = None) -> None:
    """Raise one ConfigError listing every problem of a built RunConfig (fields are checked
    while building; this adds cross-field rules and, with ``resources``, the host's own checks
    (:func:`lada.hosts.check_host_config`), models and files)."""
    problems = check_consistency(cfg)
    if resources and not problems:
        from lada.hosts import check_host_config  # host/model combinations a host cannot run

        try:
            check_host_config(cfg)
        except ConfigError as e:
            problems.append(str(e))
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
