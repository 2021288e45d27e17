"""`lada show RUN_DIR`: one run at a glance, from what it wrote (no model is loaded).

Prints the models, a per-round table (every SLM's and the LLM's accuracy, picks and rewards,
missed clients, time), and base (round 0) → final changes; writes PNG curves to
``RUN_DIR/plots/`` (matplotlib, Agg):

* ``accuracy.png``: accuracy % per round of every SLM (on its own test set) and of the LLM
  (mean over the clients' test sets, and on each);
* ``selections.png``: public samples each filter picked per round (F_k^S: for SLM k, taught
  by the LLM; F_k^L: for the LLM, taught by SLM k);
* ``rewards.png``: each filter's mean reward per round.

Works on a run still in progress (it shows the rounds recorded so far).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lada.runner.metrics_file import read_metrics

DIRECTIONS = {
    "S": "LLM -> SLM k (filter F_k^S picks what SLM k learns from the LLM)",
    "L": "SLM k -> LLM (filter F_k^L picks what the LLM learns from SLM k)",
}


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's recorded config (a plain dict) and its metrics records, in round order."""
    from lada.config import ConfigError

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = yaml.safe_load(cfg_path.read_text()) or {}
    # a line cut by a kill ends the records (the runner drops it on resume)
    records = read_metrics(run_dir, stop_at_cut_line=True)
    if not records:
        raise ConfigError(f"{run_dir}: no round recorded yet (metrics.jsonl is missing or empty)")
    return cfg, records


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _pp(base: float | None, final: float | None) -> str:
    if base is None or final is None:
        return "-"
    d = 100 * (final - base)
    colour = "green" if d > 0 else "red" if d < 0 else "white"
    return f"[{colour}]{d:+.1f}[/]"


def _clients(cfg: dict[str, Any]) -> list[str]:
    return [str(k) for k in range(len(cfg.get("clients", [])))]


def _model(cfg: dict[str, Any], k: str) -> str:
    return str(cfg["clients"][int(k)].get("model", "?"))


def rounds_table(cfg: dict[str, Any], records: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    server = cfg.get("server", {}).get("model", "?")
    table = Table(
        title="accuracy % per round (SLM k on its test set; LLM: mean over the clients' test "
        "sets); picks and mean reward per direction, summed / averaged over clients",
        title_justify="left",
    )
    table.add_column("round", justify="right", no_wrap=True)
    for k in _clients(cfg):
        table.add_column(f"SLM {k} {_model(cfg, k)}", justify="right", overflow="fold")
    table.add_column("SLM mean", justify="right")
    table.add_column(f"LLM {server}", justify="right", overflow="fold")
    for d in ("S", "L"):
        table.add_column(f"picks {d}", justify="right")
        table.add_column(f"reward {d}", justify="right")
    table.add_column("missed", justify="left", overflow="fold")
    table.add_column("s", justify="right")
    for r in records:
        cells = [str(r["round"])]
        for k in _clients(cfg):
            acc = r["slm_accuracy"].get(k)
            cells.append("[red]missed[/]" if k in r.get("missed", {}) else _pct(acc))
        cells += [_pct(r.get("slm_accuracy_mean")), _pct(r.get("llm_accuracy_mean"))]
        for d in ("S", "L"):
            picks = [v[d] for v in r.get("selected", {}).values() if d in v]
            rewards = [v[d] for v in r.get("mean_reward", {}).values() if v.get(d) is not None]
            cells.append(str(sum(picks)) if picks else "-")
            cells.append(f"{sum(rewards) / len(rewards):.3f}" if rewards else "-")
        cells.append(", ".join(sorted(r.get("missed", {}))) or "")
        cells.append(f"{r.get('seconds', {}).get('total', 0):.0f}")
        table.add_row(*cells)
    return table


def change_rows(cfg: dict[str, Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Base (round 0) → final accuracy per model: every SLM, the LLM's mean and the LLM on each
    client's test set."""
    base = next((r for r in records if r["round"] == 0), None)
    final = records[-1]
    server = cfg.get("server", {}).get("model", "?")
    rows = []
    for k in _clients(cfg):
        rows.append(
            {
                "who": f"SLM {k}",
                "model": _model(cfg, k),
                "test set": f"client {k}",
                "base": base["slm_accuracy"].get(k) if base else None,
                "final": final["slm_accuracy"].get(k),
            }
        )
    rows.append(
        {
            "who": "LLM",
            "model": server,
            "test set": "mean over clients",
            "base": base.get("llm_accuracy_mean") if base else None,
            "final": final.get("llm_accuracy_mean"),
        }
    )
    for k in _clients(cfg):
        rows.append(
            {
                "who": "LLM",
                "model": server,
                "test set": f"client {k}",
                "base": base["llm_accuracy"].get(k) if base else None,
                "final": final["llm_accuracy"].get(k),
            }
        )
    return rows


def change_table(cfg: dict[str, Any], records: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    final = records[-1]["round"]
    table = Table(
        title=f"base (round 0) -> final (round {final}): accuracy % and change in points",
        title_justify="left",
    )
    for col in ("who", "model", "test set"):
        table.add_column(col, overflow="fold")
    for col in ("base %", "final %", "change"):
        table.add_column(col, justify="right", no_wrap=True)
    for row in change_rows(cfg, records):
        table.add_row(
            row["who"],
            row["model"],
            row["test set"],
            _pct(row["base"]),
            _pct(row["final"]),
            _pp(row["base"], row["final"]),
        )
    return table


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(cfg: dict[str, Any], records: list[dict[str, Any]], out: Path) -> list[Path]:
    """Write accuracy.png, selections.png and rewards.png to ``out``; returns their paths."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    rounds = [r["round"] for r in records]
    server = cfg.get("server", {}).get("model", "?")
    written = []

    def finish(fig: Any, ax: Any, ylabel: str, title: str, name: str) -> None:
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(out / name)

    def series(get: Any) -> tuple[list[int], list[float]]:
        pts = [(r["round"], get(r)) for r in records]
        pts = [(x, y) for x, y in pts if y is not None]
        return [x for x, _ in pts], [y for _, y in pts]

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k in _clients(cfg):
        xs, ys = series(lambda r, k=k: r["slm_accuracy"].get(k))
        ax.plot(xs, [100 * y for y in ys], marker="o", label=f"SLM {k} ({_model(cfg, k)})")
    xs, ys = series(lambda r: r.get("llm_accuracy_mean"))
    ax.plot(
        xs, [100 * y for y in ys], marker="s", color="black", lw=2.5, label=f"LLM ({server}), mean"
    )
    for k in _clients(cfg):
        xs, ys = series(lambda r, k=k: r["llm_accuracy"].get(k))
        ax.plot(xs, [100 * y for y in ys], ls=":", lw=1, label=f"LLM on client {k}'s test set")
    finish(fig, ax, "accuracy %", "accuracy per round (round 0: base models)", "accuracy.png")

    for key, ylabel, title, name in (
        ("selected", "public samples picked", "picks per filter and round", "selections.png"),
        ("mean_reward", "mean reward", "mean reward per filter and round", "rewards.png"),
    ):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        drew = False
        for k in _clients(cfg):
            for d, style in (("S", "-"), ("L", "--")):
                xs, ys = series(lambda r, k=k, d=d, key=key: r.get(key, {}).get(k, {}).get(d))
                if xs:
                    drew = True
                    who = f"LLM -> SLM {k}" if d == "S" else f"SLM {k} -> LLM"
                    label = f"$F_{{{k}}}^{{{d}}}$: {who}"  # one colour per client
                    ax.plot(xs, ys, ls=style, marker="o", color=f"C{int(k) % 10}", label=label)
        if not drew:
            ax.text(0.5, 0.5, "no filter in this run", ha="center", transform=ax.transAxes)
            ax.plot(rounds, [0] * len(rounds), alpha=0)
        finish(fig, ax, ylabel, title, name)
    return written


def show(run_dir: Path, console: Any, plots: str | None = "") -> list[Path]:
    """Print the run's tables; write its plots (``plots``: a folder, "" = RUN_DIR/plots,
    None = none). Returns the PNG paths."""
    from rich.markup import escape

    cfg, records = read_run(run_dir)
    server = cfg.get("server", {}).get("model", "?")
    console.print(
        f"[bold]{run_dir}[/]: rounds {records[0]['round']}..{records[-1]['round']} recorded "
        f"(configured: {cfg.get('rounds')}, round 0 = the base models)"
    )
    console.print(
        f"  host {cfg.get('host')}, plugin {cfg.get('plugin')}, allocation "
        f"{cfg.get('allocation')}, engine {cfg.get('engine')}"
    )
    console.print(f"  LLM (server): {server}")
    for k in _clients(cfg):
        domains = ",".join(records[-1].get("client_domains", {}).get(k, []))
        console.print(
            f"  SLM {k}: {_model(cfg, k)}" + (f"  (domains {domains})" if domains else "")
        )
    console.print(rounds_table(cfg, records))
    console.print(change_table(cfg, records))
    for d, text in DIRECTIONS.items():
        console.print(f"  {d}: {text}")
    for r in records:
        for k, why in r.get("missed", {}).items():
            console.print(f"  [red]client {k} missed round {r['round']}[/]: {escape(str(why))}")
    if plots is None:
        return []
    paths = plot_run(cfg, records, Path(plots) if plots else run_dir / "plots")
    console.print("plots: " + ", ".join(str(p) for p in paths))
    return paths
