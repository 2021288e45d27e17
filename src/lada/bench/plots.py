"""PNG plots (matplotlib, Agg): accuracy per round per method, and per-pair learnability maps.

A learnability map shows, for one run, client k and direction d, how many of the public
samples the allocation picked in each round, by domain × number of reasoning steps (from
RUN_DIR/selections/round_NNN.json and RUN_DIR/data/public.jsonl).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lada.bench.suite import RunSpec
from lada.runner.metrics_file import read_metrics


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_plots(specs: list[RunSpec], runs_dir: Path, out: Path) -> list[Path]:
    """One figure per (host, scenario): mean SLM and LLM accuracy per round, one line per
    method (averaged over seeds)."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    written: list[Path] = []
    groups: dict[tuple[str, str], list[RunSpec]] = {}
    for s in specs:
        groups.setdefault((s.host, s.scenario), []).append(s)
    for (host, scen), group in sorted(groups.items()):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        methods = sorted({s.method for s in group})
        drew = False
        for m in methods:
            curves: dict[str, dict[int, list[float]]] = {"slm": {}, "llm": {}}
            for s in group:
                if s.method != m:
                    continue
                for r in read_metrics(runs_dir / s.name):
                    for key, name in (("slm", "slm_accuracy_mean"), ("llm", "llm_accuracy_mean")):
                        if r.get(name) is not None:
                            curves[key].setdefault(r["round"], []).append(100 * r[name])
            for ax, key in zip(axes, ("slm", "llm"), strict=True):
                xs = sorted(curves[key])
                if xs:
                    drew = True
                    ax.plot(xs, [np.mean(curves[key][x]) for x in xs], marker="o", label=m)
        if not drew:
            plt.close(fig)
            continue
        for ax, who in zip(axes, ("SLMs (mean)", "LLM (mean)"), strict=True):
            ax.set_xlabel("round")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
            ax.set_ylabel("accuracy %")
            ax.set_title(f"{host}, {scen}: {who}")
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        path = out / f"accuracy_{host}_{scen}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _public_meta(run_dir: Path) -> dict[str, tuple[str, int]]:
    p = run_dir / "data" / "public.jsonl"
    out: dict[str, tuple[str, int]] = {}
    if p.exists():
        for line in p.read_text().splitlines():
            d = json.loads(line)
            steps = int(d.get("meta", {}).get("num_steps", len(d.get("steps", []))))
            out[d["id"]] = (d["domain"], steps)
    return out


def selection_counts(run_dir: Path) -> dict[tuple[str, str], dict[int, dict[tuple[str, int], int]]]:
    """(client, direction) -> round -> (domain, steps) -> number of picks."""
    meta = _public_meta(run_dir)
    out: dict[tuple[str, str], dict[int, dict[tuple[str, int], int]]] = {}
    for f in sorted((run_dir / "selections").glob("round_*.json")):
        t = int(f.stem.split("_")[1])
        for k, per in json.loads(f.read_text()).items():
            for d, ids in per.items():
                cell = out.setdefault((k, d), {}).setdefault(t, {})
                for pid in ids:
                    if pid in meta:
                        cell[meta[pid]] = cell.get(meta[pid], 0) + 1
    return out


def learnability_map(run_dir: Path, path: Path, title: str) -> Path | None:
    """One figure per run: rows = (client, direction), columns = rounds; each cell a heatmap
    of picks by domain (y) × number of steps (x)."""
    counts = selection_counts(run_dir)
    if not counts:
        return None
    plt = _plt()
    meta = _public_meta(run_dir)
    domains = sorted({d for d, _ in meta.values()})
    steps = sorted({s for _, s in meta.values()})
    pairs = sorted(counts)
    rounds = sorted({t for v in counts.values() for t in v})
    fig, axes = plt.subplots(
        len(pairs),
        len(rounds),
        figsize=(2.2 * len(rounds) + 1, 1.6 * len(pairs) + 1),
        squeeze=False,
    )
    vmax = max((n for v in counts.values() for c in v.values() for n in c.values()), default=1)
    im: Any = None
    for i, pair in enumerate(pairs):
        for j, t in enumerate(rounds):
            grid = np.zeros((len(domains), len(steps)))
            for (dom, st), n in counts[pair].get(t, {}).items():
                grid[domains.index(dom), steps.index(st)] = n
            ax = axes[i][j]
            im = ax.imshow(grid, vmin=0, vmax=vmax, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(steps)), [str(s) for s in steps], fontsize=6)
            ax.set_yticks(range(len(domains)), domains if j == 0 else [], fontsize=6)
            if i == 0:
                ax.set_title(f"round {t}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"client {pair[0]} {pair[1]}", fontsize=7)
            if i == len(pairs) - 1:
                ax.set_xlabel("steps", fontsize=7)
    fig.suptitle(title, fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="picks")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def learnability_maps(specs: list[RunSpec], runs_dir: Path, out: Path) -> list[Path]:
    """Maps for every LaDa-filter or baseline run of seed 0 (the host alone transfers all)."""
    written = []
    for s in specs:
        if s.seed != 0 or s.method == "alone":
            continue
        p = learnability_map(runs_dir / s.name, out / f"learnability_{s.name}.png", s.name)
        if p is not None:
            written.append(p)
    return written
