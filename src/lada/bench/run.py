"""`lada bench --suite paper|core|rehearsal|decisive`: execute the suite, then write results.csv, results.md (with
paired CIs and filter lift), plots."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from lada.bench.compare import kind_table, lift_table, paired_table
from lada.bench.execute import execute
from lada.bench.plots import accuracy_plots, learnability_maps
from lada.bench.suite import SUITES, core_suite, paper_suite, rehearsal_suite
from lada.bench.tables import result_row, write_csv, write_markdown


def bench(
    out: str | Path,
    suite: str = "paper",
    quick: bool = False,
    seeds: int | None = None,
    jobs: int = 1,
    log: Any = print,
    only: list[str] | None = None,
    grid: bool = False,
    tables_only: bool = False,
    premise: bool = False,
) -> dict[str, Any]:
    """Run the suite (or, with ``only``, the runs whose names match one of these shell
    patterns, e.g. ``sft__*__hetero__s0``), then tabulate every suite run that has results in
    ``out``: a suite can be completed in pieces. ``tables_only``: run nothing, only rewrite the
    tables and plots from what ``out`` holds. ``premise`` (decisive suite only): measure the
    premise (:mod:`lada.bench.premise`) and run nothing else."""
    from fnmatch import fnmatch

    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r} (known: {', '.join(SUITES)})")
    if suite != "paper" and (quick or grid):
        raise ValueError(f"--quick and --grid belong to the paper suite, not to {suite}")
    if premise and suite != "decisive":
        raise ValueError("--premise belongs to the decisive suite")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if premise:
        from lada.bench.premise import measure_premise

        t0 = time.perf_counter()
        checks = measure_premise(out, log=log, testbeds=only)  # --only names testbeds here
        for testbed, cs in checks.items():
            for c in cs:
                log(
                    f"premise {testbed}: {c['check']}: {100 * c['value']:.0f} pts "
                    f"(needs {100 * c['threshold']:.0f}): {'holds' if c['holds'] else 'FAILS'}"
                )
        return {
            "runs": 0,
            "executed": 0,
            "rows": 0,
            "failed": [],
            "plots": [],
            "premise": checks,
            "seconds": time.perf_counter() - t0,
        }
    if suite == "decisive":
        from lada.bench.decisive import decisive_suite

        specs, skipped = decisive_suite(seeds=seeds, runs_dir=(out / "runs").resolve())
    elif suite == "core":
        specs, skipped = core_suite(seeds=seeds)
    elif suite == "rehearsal":
        specs, skipped = rehearsal_suite(seeds=seeds)
    else:
        specs, skipped = paper_suite(quick=quick, seeds=seeds, grid=grid)
    todo = [s for s in specs if not only or any(fnmatch(s.name, pat) for pat in only)]
    if only and not todo:
        raise ValueError(
            f"--only {only} matches no run of the suite (names: host__method__scenario__sN)"
        )
    t0 = time.perf_counter()
    log(
        f"{len(todo)} of {len(specs)} runs ({'quick' if quick else suite} suite), "
        + ("tables only" if tables_only else f"{jobs} job(s)")
        + f" → {out}"
    )
    runs_dir = out / "runs"
    if suite == "decisive":
        from lada.bench.decisive import plan_text

        log(plan_text(todo, runs_dir, jobs))
    # tables_only: run nothing, tabulate what is in out (e.g. while a suite is still running)
    statuses = [] if tables_only else execute(todo, out, jobs=jobs, log=log)
    rows = [r for s in specs if (r := result_row(s, runs_dir / s.name)) is not None]
    failed = [s for s in statuses if str(s["status"]).startswith("failed")]
    write_csv(rows, out / "results.csv")
    command = (
        "lada bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if sys.argv[1:2] == ["bench"]
        else f"lada bench --suite {suite} --out {out}" + (" --quick" if quick else "")
    )
    if suite == "decisive":
        from lada.bench.decisive import write_decisive

        notes = skipped + [f"{s['name']}: {s['status']}" for s in failed]
        write_decisive(specs, runs_dir, out / "results.md", command, notes)
        summary = {
            "runs": len(specs),
            "executed": len(todo),
            "rows": len(rows),
            "failed": [s["name"] for s in failed],
            "plots": [],
            "seconds": time.perf_counter() - t0,
        }
        (out / "bench_summary.json").write_text(json.dumps(summary, indent=2))
        return summary
    title = "LaDa bench: quick (tiny) suite" if quick else f"LaDa bench: {suite} suite"
    notes = skipped + [f"{s['name']}: {s['status']}" for s in failed]
    write_markdown(
        rows,
        out / "results.md",
        title,
        command,
        notes,
        paired=paired_table(specs, runs_dir),
        lift=lift_table(specs, runs_dir),
        kinds=kind_table(specs, runs_dir),
    )
    plots_dir = out / "plots"
    plots_dir.mkdir(exist_ok=True)
    plots = accuracy_plots(specs, runs_dir, plots_dir) + learnability_maps(
        specs, runs_dir, plots_dir
    )
    summary = {
        "runs": len(specs),
        "executed": len(todo),
        "rows": len(rows),
        "failed": [s["name"] for s in failed],
        "plots": [str(p) for p in plots],
        "seconds": time.perf_counter() - t0,
    }
    (out / "bench_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
