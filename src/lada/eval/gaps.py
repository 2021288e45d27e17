"""`lada data gaps` (ours, docs/testbed.md): the two gaps the testbed is built to have.

* **reasoning gap**: the LLM vs each SLM on *general* questions of the client's domain, by
  number of steps (the LLM should be the stronger multi-step reasoner);
* **knowledge gap**: each SLM *after local training* vs the LLM on questions that name the
  client's *private* entities, by number of steps (the SLM should know facts the LLM lacks).

Both are measured on fresh probe questions drawn from the run's world with a seed no split uses,
``n`` per (client, kind, steps) cell. Each SLM is evaluated as prepared (``base``) and after the
run's own local-training recipe on its client's train file (``local``); the LLM as prepared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lada.data.sample import Sample
from lada.data.synthetic import World, generate

__all__ = ["GapCell", "gap_summary", "measure_gaps", "probe_sets", "render_gaps"]

KINDS = ("general", "private")
PROBE_SEED = "lada-gaps-probe"  # distinct from every split's sub-seeds ("lada-split/...")


@dataclass(frozen=True)
class GapCell:
    client: int
    model: str  # "llm" or "slm"
    name: str  # the model's zoo name or path
    stage: str  # "base" (as prepared) or "local" (after local training; SLMs only)
    kind: str  # "general" or "private"
    num_steps: int
    n: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")


def probe_sets(
    world: World, domains: Sequence[str], n: int, steps: Sequence[int], seed: int
) -> list[Sample]:
    """``n`` questions per (kind, number of steps) in ``domains``; ``meta.kind`` says which."""
    out: list[Sample] = []
    for kind in KINDS:
        for k in steps:
            if kind == "general" and k > world.config.n_general:
                continue
            out += generate(
                world,
                n,
                seed=hash_seed(seed, kind, k),
                domains=list(domains),
                knowledge=kind,  # type: ignore[arg-type]
                steps=(k, k),
                id_prefix=f"gap-{kind}-{k}",
            )
    return out


def hash_seed(seed: int, *parts: object) -> int:
    from lada.utils.seeding import derive_seed

    return derive_seed(seed, PROBE_SEED, *parts)


def probe_cells(
    client: int, model: str, name: str, stage: str, samples: list[Sample], records: list[dict]
) -> list[GapCell]:
    """One :class:`GapCell` per (kind, number of steps) of ``samples``, counting the correct
    ``records`` (:func:`lada.eval.accuracy.evaluate`'s, in the samples' order)."""
    counts: dict[tuple[str, int], list[int]] = {}
    for s, r in zip(samples, records, strict=True):
        c = counts.setdefault((s.meta["kind"], s.num_steps), [0, 0])
        c[0] += bool(r["correct"])
        c[1] += 1
    return [
        GapCell(client, model, name, stage, kind, steps, n, correct)
        for (kind, steps), (correct, n) in sorted(counts.items())
    ]


def measure_gaps(
    cfg: Any,
    data: Any,
    *,
    n: int = 40,
    steps: Sequence[int] = (1, 2, 3, 4),
    capacity: int = 0,
    log: Callable[[str], None] = lambda _msg: None,
) -> list[GapCell]:
    """Every cell of both gaps for run config ``cfg`` (a RunConfig) on ``data`` (its RunData).

    ``capacity`` > 0 adds a capacity probe (stage ``capacity``): a fresh copy of each prepared
    SLM trained for that many optimizer steps on general chains of ``steps`` (the LLM's kind of
    pretraining data, none of the probes), then evaluated: can the SLM learn such chains at all?
    """
    import torch

    from lada.data.synthetic import make_world
    from lada.eval.accuracy import evaluate
    from lada.runner.setup import model_loader
    from lada.train.sft import sft
    from lada.utils.seeding import derive_seed, seed_everything

    if data.world_cfg is None:
        raise ValueError("lada data gaps needs a synthetic split (data.kind=synthetic)")
    torch.set_num_threads(max(1, int(cfg.threads)))
    world = make_world(data.world_cfg)
    probes = [
        probe_sets(world, data.domains[k], n, steps, cfg.seed) for k in range(len(cfg.clients))
    ]
    gen = {"batch_size": cfg.eval.batch_size, "max_new_tokens": cfg.eval.max_new_tokens}
    cells: list[GapCell] = []
    log(f"LLM {cfg.server.model}: {sum(map(len, probes))} probe questions")
    llm, llm_tok = model_loader(cfg.server, cfg, data.world_cfg, role="server")()
    flat = [s for p in probes for s in p]
    records = evaluate(llm, llm_tok, flat, **gen).records
    start = 0
    for k, p in enumerate(probes):
        cells += probe_cells(k, "llm", cfg.server.model, "base", p, records[start : start + len(p)])
        start += len(p)
    del llm
    for k, mc in enumerate(cfg.clients):
        if capacity > 0:
            model, tok = model_loader(mc, cfg, data.world_cfg, role=f"client_{k}")()
            seed = derive_seed(cfg.seed, "gaps", "capacity", k)
            seed_everything(seed)
            chains = generate(
                world,
                capacity * cfg.local.optim.batch_size,
                seed=seed,
                knowledge="general",
                steps=(min(steps), max(steps)),
                id_prefix="capacity",
            )
            log(f"SLM {k} {mc.model}: capacity probe, {capacity} steps on general chains")
            sft(
                model,
                tok,
                [s.prompt() for s in chains],
                [s.target() for s in chains],
                replace(cfg.local.optim, seed=seed, epochs=1, max_steps=capacity),
            )
            recs = evaluate(model, tok, probes[k], **gen).records
            cells += [
                c
                for c in probe_cells(k, "slm", mc.model, "capacity", probes[k], recs)
                if c.kind == "general"
            ]
        model, tok = model_loader(mc, cfg, data.world_cfg, role=f"client_{k}")()
        log(f"SLM {k} {mc.model}: as prepared")
        cells += probe_cells(
            k, "slm", mc.model, "base", probes[k], evaluate(model, tok, probes[k], **gen).records
        )
        seed = derive_seed(cfg.seed, "gaps", "local_train", k)
        seed_everything(seed)
        train = data.train[k]
        log(f"SLM {k} {mc.model}: local training on {len(train)} samples")
        sft(
            model,
            tok,
            [s.prompt() for s in train],
            [s.target() for s in train],
            replace(cfg.local.optim, seed=seed),
        )
        cells += probe_cells(
            k, "slm", mc.model, "local", probes[k], evaluate(model, tok, probes[k], **gen).records
        )
    return cells


def _acc(cells: list[GapCell], **match: Any) -> float:
    hit = [c for c in cells if all(getattr(c, k) == v for k, v in match.items())]
    n = sum(c.n for c in hit)
    return sum(c.correct for c in hit) / n if n else float("nan")


def gap_summary(cells: list[GapCell]) -> list[dict[str, Any]]:
    """Per client and number of steps: reasoning gap = LLM − SLM(local) on general questions;
    knowledge gap = SLM(local) − LLM on private questions (accuracy points, 0–1)."""
    rows = []
    for k in sorted({c.client for c in cells}):
        for steps in sorted({c.num_steps for c in cells if c.client == k}):
            row: dict[str, Any] = {"client": k, "num_steps": steps}
            for kind, sign in (("general", 1), ("private", -1)):
                llm = _acc(cells, client=k, model="llm", kind=kind, num_steps=steps)
                slm = _acc(cells, client=k, model="slm", stage="local", kind=kind, num_steps=steps)
                key = "reasoning_gap" if kind == "general" else "knowledge_gap"
                row[key] = sign * (llm - slm)
            rows.append(row)
    return rows


def render_gaps(cells: list[GapCell]) -> list[Any]:
    """One rich table per client: models × (kind, steps) accuracy %, then both gaps."""
    from rich.table import Table

    tables = []
    summary = gap_summary(cells)
    for k in sorted({c.client for c in cells}):
        mine = [c for c in cells if c.client == k]
        cols = sorted({(c.kind, c.num_steps) for c in mine})
        table = Table(
            title=f"client {k}: accuracy % (g = general, p = private; steps), n={mine[0].n} per cell",
            caption="reasoning gap: LLM − SLM(local) on general; knowledge: SLM(local) − LLM on private",
        )
        table.add_column("model", no_wrap=True)
        for kind, steps in cols:
            table.add_column(f"{kind[0]}{steps}", justify="right", no_wrap=True)
        seen: list[tuple[str, str, str]] = []
        for c in mine:
            if (c.model, c.name, c.stage) not in seen:
                seen.append((c.model, c.name, c.stage))
        for model, name, stage in seen:
            label = f"{model.upper()} {name} {stage}"
            row = []
            for kind, steps in cols:
                a = _acc(mine, model=model, stage=stage, kind=kind, num_steps=steps)
                row.append("-" if a != a else f"{100 * a:.0f}")  # NaN: not measured
            table.add_row(label, *row)
        gaps = {r["num_steps"]: r for r in summary if r["client"] == k}
        table.add_row(
            "reasoning gap",
            *[
                f"{100 * gaps[s]['reasoning_gap'] + 0.0:+.0f}" if kind == "general" else ""
                for kind, s in cols
            ],
        )
        table.add_row(
            "knowledge gap",
            *[
                f"{100 * gaps[s]['knowledge_gap'] + 0.0:+.0f}" if kind == "private" else ""
                for kind, s in cols
            ],
        )
        tables.append(table)
    return tables


def gaps_command(
    path: Any,
    config: str | None,
    overrides: list[str],
    n: int,
    json_out: Any,
    console: Any,
    capacity: int = 0,
) -> int:
    """`lada data gaps PATH`: PATH is a run directory (its config.yaml and data/) or a split
    directory (manifest.json; the config from ``config``, else the embedded default)."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    from lada.config import load_config
    from lada.runner.setup import load_run_data

    root = Path(path)
    if (root / "config.yaml").is_file():
        cfg = load_config(config or root / "config.yaml", overrides)
        split_dir = root / "data"
    elif (root / "manifest.json").is_file():
        cfg = load_config(config, overrides)
        split_dir = root
    else:
        raise FileNotFoundError(
            f"{root}: neither a run directory (config.yaml) nor a split (manifest.json)"
        )
    cfg.data.dir = str(split_dir)
    data = load_run_data(cfg, split_dir)
    cells = measure_gaps(
        cfg, data, n=n, capacity=capacity, log=lambda m: console.print(f"[dim]{m}[/dim]")
    )
    for table in render_gaps(cells):
        console.print(table)
    if json_out is not None:
        out = {
            "path": str(root),
            "n": n,
            "cells": [asdict(c) | {"accuracy": c.accuracy} for c in cells],
            "gaps": gap_summary(cells),
        }
        Path(json_out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0
