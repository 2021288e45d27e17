"""The decisive suite's premise (ours): is there learnability spread for allocation to find?

Measured with :func:`lada.eval.gaps.measure_gaps` on each testbed's seed-0 split and prepared
models, before any LaDa number (`lada bench --suite decisive --premise --out DIR`). Three checks,
fixed before the measurement (:func:`premise_checks`):

1. **teacher spread**: the LLM's accuracy on general probe questions differs by at least
   :data:`TEACHER_SPREAD` between numbers of steps (1-4), so whether the LLM's path is right
   depends on the candidate;
2. **learner spread**: at some number of steps, two SLMs' accuracy on general questions after
   the capacity probe (what each can learn; after local training where no probe was run)
   differs by at least :data:`LEARNER_SPREAD`, so what each SLM can learn differs;
3. **knowledge gap**: every SLM after local training beats the LLM by at least
   :data:`KNOWLEDGE_GAP` on 1-step private questions, so the LLM side has something to learn.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lada.eval.gaps import GapCell

TEACHER_SPREAD = 0.30
LEARNER_SPREAD = 0.20
KNOWLEDGE_GAP = 0.30
PROBES = 30  # probe questions per (client, kind, steps) cell: binomial SD up to ~9 points
CAPACITY_STEPS = {"zoo": 1000, "real": 200}  # the capacity probe's optimiser steps


def _acc(cells: list[GapCell], **match: Any) -> float:
    hit = [c for c in cells if all(getattr(c, k) == v for k, v in match.items())]
    n = sum(c.n for c in hit)
    return sum(c.correct for c in hit) / n if n else float("nan")


def premise_checks(cells: list[GapCell]) -> list[dict[str, Any]]:
    """[{check, value, threshold, holds}] for the three checks of the module doc."""
    steps = sorted({c.num_steps for c in cells if c.kind == "general"})
    llm = [_acc(cells, model="llm", kind="general", num_steps=s) for s in steps]
    llm = [a for a in llm if a == a]
    teacher = max(llm) - min(llm) if llm else float("nan")
    clients = sorted({c.client for c in cells if c.model == "slm"})
    stage = "capacity" if any(c.stage == "capacity" for c in cells) else "local"
    learner = float("nan")
    for s in steps:
        accs = [
            _acc(cells, model="slm", stage=stage, kind="general", num_steps=s, client=k)
            for k in clients
        ]
        accs = [a for a in accs if a == a]
        if len(accs) >= 2:
            spread = max(accs) - min(accs)
            learner = spread if learner != learner else max(learner, spread)
    gaps = [
        _acc(cells, model="slm", stage="local", kind="private", num_steps=1, client=k)
        - _acc(cells, model="llm", kind="private", num_steps=1, client=k)
        for k in clients
    ]
    gaps = [g for g in gaps if g == g]
    knowledge = min(gaps) if gaps else float("nan")
    return [
        {
            "check": "teacher spread: LLM general accuracy, max − min over steps",
            "value": teacher,
            "threshold": TEACHER_SPREAD,
            "holds": teacher >= TEACHER_SPREAD,
        },
        {
            "check": f"learner spread: SLMs' general accuracy ({stage}), largest max − min at "
            "one number of steps",
            "value": learner,
            "threshold": LEARNER_SPREAD,
            "holds": learner >= LEARNER_SPREAD,
        },
        {
            "check": "knowledge gap: min over clients of SLM(local) − LLM on 1-step private",
            "value": knowledge,
            "threshold": KNOWLEDGE_GAP,
            "holds": knowledge >= KNOWLEDGE_GAP,
        },
    ]


def cells_markdown(cells: list[GapCell]) -> str:
    """Accuracy % per client and model (stage) × (kind, steps)."""
    cols = sorted({(c.kind, c.num_steps) for c in cells})
    head = "| client | model (stage) | " + " | ".join(f"{k[0]}{s}" for k, s in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for k in sorted({c.client for c in cells}):
        seen: list[tuple[str, str, str]] = []
        for c in cells:
            if c.client == k and (c.model, c.name, c.stage) not in seen:
                seen.append((c.model, c.name, c.stage))
        for model, name, stage in seen:
            row = []
            for kind, s in cols:
                a = _acc(cells, client=k, model=model, stage=stage, kind=kind, num_steps=s)
                row.append("–" if a != a else f"{100 * a:.0f}")
            lines.append(f"| {k} | {model.upper()} {name} ({stage}) | " + " | ".join(row) + " |")
    return "\n".join(lines)


def checks_markdown(checks: list[dict[str, Any]]) -> str:
    lines = ["| check | value | threshold | holds |", "|---|---|---|---|"]
    for c in checks:
        lines.append(
            f"| {c['check']} | {100 * c['value']:.0f} pts | {100 * c['threshold']:.0f} pts | "
            f"{'yes' if c['holds'] else '**no**'} |"
        )
    return "\n".join(lines)


def measure_premise(
    out: Path, log: Callable[[str], None] = print, testbeds: list[str] | None = None
) -> dict[str, Any]:
    """Each testbed's gaps on its seed-0 split (made under ``out/premise/<testbed>/data``) and
    prepared models; writes premise/<testbed>.json (with the overrides measured) and
    premise/premise.md; returns the checks. ``testbeds``: measure only these; the others'
    earlier measurements (their premise/<testbed>.json) are kept and shown in premise.md."""
    from lada.bench.decisive import HOST, TESTBEDS
    from lada.config import load_config
    from lada.eval.gaps import gap_summary, measure_gaps
    from lada.runner.roles import prepare_zoo_models
    from lada.runner.setup import load_run_data, world_config

    unknown = sorted(set(testbeds or []) - set(TESTBEDS))
    if unknown:
        raise ValueError(f"no testbed {unknown} in the decisive suite (known: {list(TESTBEDS)})")
    root = out / "premise"
    parts = ["# Premise: learnability spread (lada bench --suite decisive --premise)", ""]
    result: dict[str, Any] = {}
    for testbed, (base, _) in TESTBEDS.items():
        overrides = [*base, "seed=0", f"host={HOST}", "plugin=none"]
        recorded = root / f"{testbed}.json"
        if testbeds and testbed not in testbeds:
            if not recorded.is_file():
                continue
            old = json.loads(recorded.read_text())
            cells = [
                GapCell(**{k: c[k] for k in GapCell.__dataclass_fields__}) for c in old["cells"]
            ]
            checks = old["checks"]
            if "overrides" not in old:
                note = "measured earlier, overrides not recorded"
            elif old["overrides"] == overrides:
                note = "measured earlier"
            else:
                note = "measured earlier, with other overrides than now"
            log(f"premise {testbed}: kept ({note})")
        else:
            cfg = load_config(None, overrides)
            cfg.threads = 2
            d = root / testbed
            d.mkdir(parents=True, exist_ok=True)
            data = load_run_data(cfg, d, record=False)
            prepare_zoo_models(cfg, world_config(cfg))
            log(f"premise {testbed}: measuring the gaps ({PROBES} probes per cell)")
            cells = measure_gaps(
                cfg, data, n=PROBES, capacity=CAPACITY_STEPS[testbed], log=lambda m: log(f"  {m}")
            )
            checks = premise_checks(cells)
            recorded.write_text(
                json.dumps(
                    {
                        "overrides": overrides,
                        "cells": [asdict(c) | {"accuracy": c.accuracy} for c in cells],
                        "gaps": gap_summary(cells),
                        "checks": checks,
                    },
                    indent=2,
                )
                + "\n"
            )
            note = "measured now"
        parts += [
            f"## {testbed} ({note})",
            "",
            cells_markdown(cells),
            "",
            checks_markdown(checks),
            "",
        ]
        result[testbed] = checks
        (root / "premise.md").write_text("\n".join(parts))
    return result
