"""`lada …` commands. Thin: parse arguments, call the library, print."""

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

    return Console(stderr=False)


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


# ---- models ------------------------------------------------------------------------------


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from lada.config import load_config
    from lada.models.prepare import is_zoo_name, prepare_models
    from lada.runner.setup import world_config

    cfg = load_config(args.config, args.overrides)
    names = args.models or sorted(
        {m.model for m in [cfg.server, *cfg.clients] if is_zoo_name(m.model)}
    )
    world = world_config(cfg)
    console = _console()
    console.print(f"preparing {', '.join(names)} ({cfg.prepare.workers} at a time) …")
    paths = prepare_models(names, cfg.prepare, world, force=args.force, progress=True)
    for name, path in paths.items():
        info = json.loads((path / "lada_prepare.json").read_text())
        console.print(
            f"  {name:7s} {path}  final loss {info['final_loss']:.3f}  {info['seconds']:.0f}s"
        )
    if args.eval:
        _eval_prepared(paths, world, args.eval, console)
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


def _load_model(name: str, lora: bool) -> tuple[Any, Any]:
    from lada.config import load_config
    from lada.models.loading import LoraSettings, load_causal_lm
    from lada.models.prepare import is_zoo_name, prepare_model
    from lada.runner.setup import world_config

    source: Any = name
    if is_zoo_name(name):
        cfg = load_config()
        source = prepare_model(name, cfg.prepare, world_config(cfg), progress=True)
    return load_causal_lm(source, lora=LoraSettings() if lora else None)


def _eval_and_print(model, tok, samples, out: Path | None, title: str) -> dict[str, Any]:
    from lada.eval.accuracy import accuracy_table, evaluate, render_table

    res = evaluate(model, tok, samples)
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
    from lada.config import build
    from lada.config.overrides import apply_overrides, to_dict
    from lada.train.loop import OptimConfig
    from lada.train.sft import sft

    optim = build(OptimConfig, apply_overrides(to_dict(OptimConfig()), args.overrides))
    train = _load_samples(args.data, args.format, args.field)
    model, tok = _load_model(args.model, args.lora)
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
    samples = _load_samples(args.data, args.format, args.field)
    if args.limit:
        samples = samples[: args.limit]
    model, tok = _load_model(args.model, False)
    _eval_and_print(
        model, tok, samples, Path(args.out) if args.out else None, f"{args.model} on {args.data}"
    )
    return 0


# ---- run ---------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from lada.config import load_config
    from lada.runner.run import run

    overrides = list(args.overrides) + ([f"engine={args.engine}"] if args.engine else [])
    cfg = None if args.resume else load_config(args.config, overrides)
    console = _console()
    records = run(cfg, args.out, resume=args.resume, console=console)
    summary = json.loads((Path(args.out) / "summary.json").read_text())
    console.print(f"[bold]done[/]: {len(records)} rounds recorded in {args.out}/metrics.jsonl")
    if summary["missed"]:
        for k, misses in summary["missed"].items():
            rounds = ", ".join(str(m["round"]) for m in misses)
            console.print(f"[red]client {k} missed round(s) {rounds}[/]")
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
    )
    console.print(
        f"[bold]bench done[/]: {summary['rows']}/{summary['runs']} runs with results, "
        f"{len(summary['plots'])} plots; see {args.out}/results.md"
    )
    for name in summary["failed"]:
        console.print(f"[red]failed[/]: {name} (see {args.out}/runs/{name}/bench_error.txt)")
    return 1 if summary["failed"] else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lada", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make or inspect datasets").add_subparsers(
        dest="sub", required=True
    )
    mk = data.add_parser(
        "make", help="write the synthetic federated split as JSONL + manifest.json"
    )
    mk.add_argument("--out", required=True, type=Path)
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("settings", nargs="*", metavar="key=value", help="SplitConfig settings")
    mk.set_defaults(func=cmd_data_make)
    st = data.add_parser("stats", help="print a dataset's statistics as one JSON object")
    st.add_argument("path")
    st.add_argument("--format", choices=["gsm8k", "mc", "lada"], default="lada")
    st.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="key=value",
        help="loader field option, e.g. question_field=q (mc format)",
    )
    st.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    st.set_defaults(func=cmd_data_stats)

    models = sub.add_parser("models", help="model zoo").add_subparsers(dest="sub", required=True)
    pr = models.add_parser("prepare", help="pretrain (once, cached) the zoo models a config uses")
    pr.add_argument("--config")
    pr.add_argument("--models", nargs="*", help="zoo names (default: those in the config)")
    pr.add_argument("--force", action="store_true")
    pr.add_argument(
        "--eval",
        type=int,
        default=0,
        metavar="N",
        help="then evaluate each model on N held-out general samples by steps",
    )
    pr.add_argument("overrides", nargs="*", metavar="key=value")
    pr.set_defaults(func=cmd_models_prepare)

    tr = sub.add_parser("train", help="SFT one model on a dataset (question -> rationale + answer)")
    tr.add_argument("--model", required=True, help="zoo name, local path or hub id")
    tr.add_argument("--data", required=True)
    tr.add_argument("--format", choices=["gsm8k", "mc", "lada"], default="lada")
    tr.add_argument("--field", action="append", default=[], metavar="key=value")
    tr.add_argument("--eval-data")
    tr.add_argument("--lora", action="store_true")
    tr.add_argument("--out", required=True)
    tr.add_argument("overrides", nargs="*", metavar="key=value", help="OptimConfig fields")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="accuracy of a model on a dataset, by domain and steps")
    ev.add_argument("--model", required=True)
    ev.add_argument("--data", required=True)
    ev.add_argument("--format", choices=["gsm8k", "mc", "lada"], default="lada")
    ev.add_argument("--field", action="append", default=[], metavar="key=value")
    ev.add_argument("--limit", type=int)
    ev.add_argument("--out")
    ev.set_defaults(func=cmd_eval)

    rn = sub.add_parser("run", help="run LaDa rounds (the embedded default without --config)")
    rn.add_argument("--config")
    rn.add_argument("--out", required=True)
    rn.add_argument("--resume", action="store_true", help="continue the run in --out")
    rn.add_argument(
        "--engine",
        choices=["inprocess", "flower-sim"],
        help="shorthand for engine=…: in-process (default) or Flower simulation",
    )
    rn.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config keys")
    rn.set_defaults(func=cmd_run)

    bn = sub.add_parser("bench", help="hosts × methods × scenarios × seeds: tables and plots")
    bn.add_argument("--suite", default="paper", choices=["paper"])
    bn.add_argument("--out", required=True)
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
    bn.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    # our own rich progress bars say what runs; hub/transformers per-file bars are noise here
    # (set HF_HUB_DISABLE_PROGRESS_BARS=0 to see them)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    args = build_parser().parse_args(argv)
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
