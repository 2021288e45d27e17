"""Driving a run on any engine: the run directory, its rounds, checkpoints and resume.

RUN_DIR/
  config.yaml              the config snapshot (resume reads it)
  data/                    the generated split (synthetic data)
  metrics.jsonl            one JSON object per round (round 0: before training)
  selections/round_NNN.json  public ids each filter picked, per client and direction
  questions/round_NNN.json   per-question correctness of every SLM and of the LLM (bench CIs)
  learning/round_NNN.json    each learner's per-pick losses before/after its step (filter lift)
  checkpoints/round_NNN/   the server's LLM and filter states at the end of round NNN
  clients/client_K/        each client's own state (its SLM), saved by the client
  state.json               {"last_complete_round": N}: written last, atomically
  summary.json             base/final accuracies and change, missed rounds, wall time
  log.txt                  what the run printed (`lada run`)
  plots/                   PNG curves (`lada show`)
  tensorboard/             TensorBoard event files (optional: report.to: [tensorboard])
  .lock                    held (fcntl) by the process writing the run

Every file's fields: docs/run-dir.md.

A round is complete once state.json names it; a run killed at any moment loses at most the
round in progress, and ``--resume`` continues deterministically from the last complete one.
Engines (:mod:`lada.engines`) call :func:`drive` with their transport.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from lada.config import RunConfig, load_config, to_dict
from lada.config.paths import resolve_file_paths
from lada.federation.report import RoundReport
from lada.federation.round import evaluate_clients, run_round
from lada.federation.server import ServerRole
from lada.federation.transport import Transport
from lada.runner.details import write_round_details
from lada.runner.metrics_file import read_metrics
from lada.runner.report import (
    metrics_record,
    print_final,
    print_round,
    print_round_start,
    run_summary,
)
from lada.runner.roles import run_host, run_plugin
from lada.runner.tensorboard import open_report
from lada.utils.files import (
    append_line,
    atomic_write_json,
    atomic_write_text,
    fsync_tree,
    replace_dir,
)


class RunDirError(RuntimeError):
    pass


def _state(run_dir: Path) -> dict[str, Any] | None:
    p = run_dir / "state.json"
    return json.loads(p.read_text()) if p.exists() else None


LOCK_FILE = ".lock"  # held (fcntl) by the process writing the run, as long as it lives
# what a LaDa run directory holds (the module doc); a non-empty folder with anything else is not
# a run's and is refused
RUN_ENTRIES = {
    LOCK_FILE,
    "config.yaml",
    "data",
    "data_used.json",
    "metrics.jsonl",
    "selections",
    "questions",
    "learning",
    "checkpoints",
    "clients",
    "state.json",
    "summary.json",
    "log.txt",
    "plots",
    "bench_error.txt",  # `lada bench`: why this run failed (it is retried in place)
}
_LOCKS: dict[Path, int] = {}  # run directories this process holds: resolved path -> fd


def lock_run_dir(run_dir: Path) -> None:
    """Hold ``run_dir``'s lock for the rest of this process (idempotent; ``run_dir`` exists).
    Another process holding it: :class:`RunDirError` at once."""
    import fcntl
    import os

    key = run_dir.resolve()
    if key in _LOCKS:
        return
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(run_dir / LOCK_FILE, flags, 0o600)
    except OSError as e:
        raise RunDirError(f"{run_dir}: cannot open its lock file {LOCK_FILE}: {e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise RunDirError(
            f"{run_dir} is in use by another lada run (pid {holder or '?'}): wait for it to "
            "end, or use another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _LOCKS[key] = fd


def _check_is_run_dir(run_dir: Path) -> None:
    """Refuse a non-empty folder that is not a LaDa run's (nothing of it would be overwritten)."""
    if not run_dir.is_dir():
        if run_dir.exists() or run_dir.is_symlink():
            raise RunDirError(f"{run_dir} exists and is not a folder")
        return
    if (run_dir / "config.yaml").is_file() and any(
        (run_dir / n).exists() for n in ("state.json", "metrics.jsonl", "checkpoints")
    ):
        return  # a run's (files of the user's own beside it are left alone)
    # hidden names: a killed atomic write's temp file, the lock
    foreign = sorted(
        p.name for p in run_dir.iterdir() if p.name not in RUN_ENTRIES and p.name[:1] != "."
    )
    if foreign:
        raise RunDirError(
            f"{run_dir} is not empty and not a LaDa run (it holds {', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}): use an empty or new folder for --out"
        )


def claim_run_dir(run_dir: Path) -> None:
    """Refuse ``run_dir`` when it is a non-empty folder that is not a LaDa run's, or when
    another process writes it; otherwise hold its lock (if it exists yet)."""
    _check_is_run_dir(run_dir)
    if run_dir.is_dir():
        lock_run_dir(run_dir)


def prepare_run_dir(run_dir: Path, cfg: RunConfig | None, resume: bool) -> tuple[RunConfig, int]:
    """Returns the config and the last complete round (0 for a new run). Holds the run
    directory's lock (:func:`lock_run_dir`) from here on."""
    claim_run_dir(run_dir)
    state = _state(run_dir)
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise RunDirError(f"{run_dir}: nothing to resume (no config.yaml)")
        cfg = load_config(run_dir / "config.yaml")
        return cfg, int(state["last_complete_round"]) if state else -1
    if state is not None or (run_dir / "metrics.jsonl").exists():
        raise RunDirError(f"{run_dir} already holds a run: use --resume, or another --out")
    assert cfg is not None
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_run_dir(run_dir)
    if _state(run_dir) is not None:  # another process started it meanwhile
        raise RunDirError(f"{run_dir} already holds a run: use --resume, or another --out")
    # relative paths from overrides name places in the current directory: made absolute, so
    # that resume (from any directory) reads the same files (a file's own are absolute already)
    snapshot = resolve_file_paths(to_dict(cfg), Path.cwd())
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(snapshot, sort_keys=False))
    return cfg, -1


def _truncate_metrics(run_dir: Path, last_round: int) -> list[dict[str, Any]]:
    p = run_dir / "metrics.jsonl"
    if not p.exists():
        return []
    # a line cut by a kill: drop it and what follows
    kept = [r for r in read_metrics(run_dir, stop_at_cut_line=True) if r["round"] <= last_round]
    atomic_write_text(p, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def drive(
    cfg: RunConfig,
    run_dir: Path,
    server: ServerRole,
    transport: Transport,
    last: int,
    domains: list[list[str]],
    console: Any = None,
) -> list[dict[str, Any]]:
    """Rounds last+1..cfg.rounds on any transport, committing each round to ``run_dir``."""
    records = _truncate_metrics(run_dir, last)
    if last >= 0:
        ckpt = run_dir / "checkpoints" / f"round_{last:03d}"
        if not (ckpt / "llm.safetensors").exists():
            raise RunDirError(
                f"{ckpt}: the server's checkpoint of round {last} (the last complete one) is "
                "missing; it cannot be resumed without it"
            )
        server.load(ckpt)
    start = last + 1
    if start == 0 and not cfg.eval.initial:
        start = 1
    host, plugin = run_host(cfg), run_plugin(cfg)
    logger = open_report(cfg, run_dir)  # report.to (optional)
    for t in range(start, cfg.rounds + 1):
        if console is not None:
            print_round_start(console, records, t, cfg.rounds)
        t0 = time.perf_counter()
        if t == 0:
            report = _initial_evaluation(server, transport)
        else:
            report = run_round(t, server, transport, host, plugin)
        report.seconds["total"] = time.perf_counter() - t0
        record = metrics_record(report, transport.comm, cfg, domains)
        _commit_round(run_dir, t, server, report, record, cfg)
        records.append(record)
        if logger is not None:
            logger.log_round(run_dir, record)
        if console is not None:
            print_round(console, record, cfg)
    if logger is not None:
        logger.close()
    from lada.accel import record, record_line

    runtime = record()  # what ran: accel path, kernels, generator, dtypes, CPU, torch
    if console is not None:
        console.print(record_line(runtime), markup=False, highlight=False, soft_wrap=True)
    atomic_write_json(run_dir / "summary.json", {**run_summary(records, cfg), "runtime": runtime})
    if console is not None and records:
        print_final(console, records[-1], cfg)
    return records


def _initial_evaluation(server: ServerRole, transport: Transport) -> RoundReport:
    """Round 0: accuracies before any federated training (base models)."""
    from lada.federation.guard import guarded

    transport = guarded(transport, server)
    rep = RoundReport(round=0)
    t0 = time.perf_counter()
    evaluate_clients(rep, transport, 0, transport.clients())
    rep.llm_eval = server.evaluate(0)
    rep.seconds["evaluate"] = time.perf_counter() - t0
    return rep


def _commit_round(
    run_dir: Path,
    t: int,
    server: ServerRole,
    report: RoundReport,
    record: dict[str, Any],
    cfg: RunConfig,
) -> None:
    """Persist round t; state.json last, so a kill before it means the round is redone."""
    ckpts = run_dir / "checkpoints"
    tmp = ckpts / f".round_{t:03d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    server.save(tmp)
    replace_dir(tmp, ckpts / f"round_{t:03d}")
    if report.selected:
        atomic_write_json(
            run_dir / "selections" / f"round_{t:03d}.json",
            {str(k): v for k, v in report.selected.items()},
        )
    if report.oracle_selected:
        atomic_write_json(
            run_dir / "oracle" / f"round_{t:03d}.json",
            {str(k): v for k, v in report.oracle_selected.items()},
        )
    write_round_details(run_dir, t, report)
    append_line(run_dir / "metrics.jsonl", json.dumps(record))
    fsync_tree(ckpts / f"round_{t:03d}")
    fsync_tree(run_dir, recursive=False)  # the round's files reach the disk before state.json
    atomic_write_json(run_dir / "state.json", {"last_complete_round": t})
    if cfg.keep_checkpoints == "last":
        for old in ckpts.glob("round_*"):
            if old.name != f"round_{t:03d}":
                shutil.rmtree(old, ignore_errors=True)
