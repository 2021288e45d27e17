"""Run a suite's runs: finished ones are skipped, unfinished ones resumed, J in parallel.

A run directory DIR/runs/<name> is finished when its state.json says
last_complete_round == rounds (the config's). Each run executes in its own process (spawn)
with one torch thread, so J jobs use J cores.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any

from lada.bench.suite import RunSpec
from lada.utils.workers import worker_pool


def run_state(run_dir: Path) -> str:
    """ "done", "partial" (resumable) or "new"."""
    cfg_file, state_file = run_dir / "config.yaml", run_dir / "state.json"
    if not cfg_file.exists():
        return "new"
    if state_file.exists():
        import yaml

        rounds = int(yaml.safe_load(cfg_file.read_text())["rounds"])
        if int(json.loads(state_file.read_text())["last_complete_round"]) >= rounds:
            return "done"
    return "partial"


def stale_runs(specs: list[RunSpec], runs_dir: Path) -> list[str]:
    """Runs whose saved config differs from what the plan asks now, as "name: key (saved -> now)".

    The bench skips finished runs and resumes partial ones by directory, so a run made under other
    settings (an older plan, other overrides) would otherwise be reused silently. A key missing
    from the saved config is a field added to the code after the run was made: it counts only
    when the plan sets it to something other than its default.
    """
    import warnings

    import yaml

    from lada.config import RunConfig, load_config, to_dict
    from lada.config.sections import ConfigKeyRenamed, apply_renames

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix: d}
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out

    default = flat(to_dict(RunConfig()))
    stale = []
    for spec in specs:
        cfg_file = runs_dir / spec.name / "config.yaml"
        if not cfg_file.exists():
            continue
        raw = yaml.safe_load(cfg_file.read_text())
        with warnings.catch_warnings():  # a run recorded with keys that moved since: read as now
            warnings.simplefilter("ignore", ConfigKeyRenamed)
            apply_renames(raw)
        saved = flat(raw)
        now = flat(to_dict(load_config(None, list(spec.overrides))))
        diff = [
            k
            for k in sorted(set(saved) | set(now))
            if saved.get(k) != now.get(k) and (k in saved or now.get(k) != default.get(k))
        ]
        if diff:
            k = diff[0]
            more = f" and {len(diff) - 1} more" if len(diff) > 1 else ""
            stale.append(f"{spec.name}: {k} ({saved.get(k)!r} -> {now.get(k)!r}){more}")
    return stale


def execute_one(spec: RunSpec, run_dir: str) -> dict[str, Any]:
    """Run (or resume) one spec in this process; returns {name, status, seconds, error}."""
    import torch

    torch.set_num_threads(1)
    from lada.config import load_config
    from lada.runner.run import run

    path = Path(run_dir)
    state = run_state(path)
    t0 = time.perf_counter()
    try:
        if state == "done":
            return {"name": spec.name, "status": "skipped (done)", "seconds": 0.0}
        if state == "partial":
            run(None, path, resume=True)
        else:
            run(load_config(None, list(spec.overrides)), path)
        status = "resumed" if state == "partial" else "ran"
        return {"name": spec.name, "status": status, "seconds": time.perf_counter() - t0}
    except Exception as e:  # one failing run must not stop the suite
        (path / "bench_error.txt").parent.mkdir(parents=True, exist_ok=True)
        (path / "bench_error.txt").write_text(traceback.format_exc())
        return {"name": spec.name, "status": f"failed: {type(e).__name__}: {e}", "seconds": 0.0}


def prepare_models_for(specs: list[RunSpec]) -> None:
    """Pretrain every zoo model the suite needs once, before parallel runs start."""
    from lada.config import load_config
    from lada.runner.run import prepare_zoo_models
    from lada.runner.setup import world_config

    seen: set[tuple[str, ...]] = set()
    for spec in specs:
        cfg = load_config(None, list(spec.overrides))
        key = tuple(sorted({m.model for m in [cfg.server, *cfg.clients]})) + (repr(cfg.prepare),)
        if key not in seen:
            seen.add(key)
            prepare_zoo_models(cfg, world_config(cfg))


def execute(
    specs: list[RunSpec], out: Path, jobs: int = 1, log: Any = print
) -> list[dict[str, Any]]:
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    stale = stale_runs(specs, runs_dir)
    if stale:
        raise ValueError(
            f"{runs_dir}: {len(stale)} run(s) were made with other settings than the plan's now "
            f"(use a new --out, or delete them to re-run): " + "; ".join(stale[:5])
        )
    todo = [s for s in specs if run_state(runs_dir / s.name) != "done"]
    results = [
        {"name": s.name, "status": "skipped (done)", "seconds": 0.0} for s in specs if s not in todo
    ]
    ordered: list[RunSpec] = []
    while len(ordered) < len(todo):  # plan order, a run after the one it reads
        nxt = next_ready([s for s in todo if s not in ordered], ())
        if nxt is None:
            raise ValueError(f"runs that wait for each other: {[s.name for s in todo]}")
        ordered.append(nxt)
    if todo:
        prepare_models_for(todo)
    if jobs <= 1:
        for i, s in enumerate(ordered, 1):
            r = execute_one(s, str(runs_dir / s.name))
            log(f"[{i}/{len(todo)}] {s.name}: {r['status']} ({r['seconds']:.0f}s)")
            results.append(r)
        return results
    pending, running, i = list(ordered), {}, 0
    with worker_pool(jobs) as pool:  # the jobs end with `lada bench` (Ctrl-C, SIGTERM)
        while pending or running:
            while len(running) < jobs and (s := next_ready(pending, running.values())):
                pending.remove(s)
                running[pool.submit(execute_one, s, str(runs_dir / s.name))] = s
            if not running:
                raise ValueError(f"runs that wait for each other: {[s.name for s in pending]}")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                running.pop(fut)
                r, i = fut.result(), i + 1
                log(f"[{i}/{len(todo)}] {r['name']}: {r['status']} ({r['seconds']:.0f}s)")
                results.append(r)
    return results


def next_ready(pending: list[RunSpec], running: Iterable[RunSpec]) -> RunSpec | None:
    """The first pending run (in plan order) whose ``after`` run is neither pending nor
    running: ended (done, or failed: then it fails itself, naming what it missed) or not in
    this plan."""
    waiting = {s.name for s in pending} | {s.name for s in running}
    return next((s for s in pending if s.after is None or s.after not in waiting), None)
