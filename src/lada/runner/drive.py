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
from lada.federation.report import RoundReport
from lada.federation.round import evaluate_clients, run_round
from lada.federation.server import ServerRole
from lada.federation.transport import Transport
from lada.runner.details import write_round_details
from lada.runner.metrics_file import read_metrics
from lada.runner.report import metrics_record, print_final, print_round, run_summary
from lada.runner.roles import run_host, run_plugin
from lada.utils.files import atomic_write_json, atomic_write_text, replace_dir


class RunDirError(RuntimeError):
    pass


def _state(run_dir: Path) -> dict[str, Any] | None:
    p = run_dir / "state.json"
    return json.loads(p.read_text()) if p.exists() else None


def prepare_run_dir(run_dir: Path, cfg: RunConfig | None, resume: bool) -> tuple[RunConfig, int]:
    """Returns the config and the last complete round (0 for a new run)."""
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
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
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
        if (ckpt / "llm.safetensors").exists():
            server.load(ckpt)
    start = last + 1
    if start == 0 and not cfg.eval.initial:
        start = 1
    host, plugin = run_host(cfg), run_plugin(cfg)
    for t in range(start, cfg.rounds + 1):
        t0 = time.perf_counter()
        if t == 0:
            report = _initial_evaluation(server, transport)
        else:
            report = run_round(t, server, transport, host, plugin)
        report.seconds["total"] = time.perf_counter() - t0
        record = metrics_record(report, transport.comm, cfg, domains)
        _commit_round(run_dir, t, server, report, record, cfg)
        records.append(record)
        if console is not None:
            print_round(console, record, cfg)
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
    write_round_details(run_dir, t, report)
    metrics = run_dir / "metrics.jsonl"
    with metrics.open("a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
    atomic_write_json(run_dir / "state.json", {"last_complete_round": t})
    if cfg.keep_checkpoints == "last":
        for old in ckpts.glob("round_*"):
            if old.name != f"round_{t:03d}":
                shutil.rmtree(old, ignore_errors=True)
