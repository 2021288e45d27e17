"""`lada show RUN_DIR`: one run at a glance, from what it wrote (no model is loaded).

Prints the models, a per-round table (every SLM's and the LLM's accuracy, picks and rewards,
missed clients, time), and base (round 0) → final changes; writes PNG curves to
``RUN_DIR/plots/`` (matplotlib, Agg):

* ``accuracy.png``: accuracy % per round of every SLM (on its own test set) and of the LLM
  (mean over the clients' test sets, and on each, in that client's colour); the legend names
  each test set's number of questions;
* ``selections.png``: what the filters picked from P per round: the share of each domain
  among all picks, and the mean number of reasoning steps of each filter's picks (F_k^S: for
  SLM k, taught by the LLM; F_k^L: for the LLM, taught by SLM k) against all of P's; from
  ``selections/round_NNN.json`` and the run's public set (without them: picks per filter);
* ``rewards.png``: each filter's mean reward per round.

Several runs (one per seed): base → final change of the mean accuracies per run and paired over
the runs (:func:`show_seeds`); ``by`` a question group (:func:`show_groups`): the same per value
of that group (``kind``, ``num_steps``, ``domain``), from the counts in ``groups``.

Client k has the same colour in every plot.

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


def plot_run(
    cfg: dict[str, Any], records: list[dict[str, Any]], out: Path, run_dir: Path | None = None
) -> list[Path]:
    """Write accuracy.png, selections.png and rewards.png to ``out``; returns their paths.
    With ``run_dir``, selections.png shows what was picked (else how many)."""
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

    sizes = {k: _test_size(records, k) for k in _clients(cfg)}

    def n_of(k: str) -> str:
        return f", {sizes[k]} questions" if sizes[k] else ""

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k in _clients(cfg):
        xs, ys = series(lambda r, k=k: r["slm_accuracy"].get(k))
        ax.plot(
            xs,
            [100 * y for y in ys],
            marker="o",
            color=_colour(k),
            label=f"SLM {k} ({_model(cfg, k)}) on its test set{n_of(k)}",
        )
    xs, ys = series(lambda r: r.get("llm_accuracy_mean"))
    total = sum(sizes.values())
    ax.plot(
        xs,
        [100 * y for y in ys],
        marker="s",
        color="black",
        lw=2.5,
        label=f"LLM ({server}), mean over clients" + (f" ({total} questions)" if total else ""),
    )
    for k in _clients(cfg):
        xs, ys = series(lambda r, k=k: r["llm_accuracy"].get(k))
        ax.plot(
            xs,
            [100 * y for y in ys],
            ls=":",
            lw=1.5,
            color=_colour(k),
            label=f"LLM on client {k}'s test set{n_of(k)}",
        )
    top = max(
        [
            100 * v
            for r in records
            for key in ("slm_accuracy", "llm_accuracy")
            for v in r.get(key, {}).values()
            if v
        ]
        or [0]
    )
    ax.set_ylim(-2, max(10.0, min(102.0, top + 5)))  # an all-zero run still reads as percent
    finish(
        fig,
        ax,
        "accuracy % of the test questions",
        "accuracy per round (round 0: base models)",
        "accuracy.png",
    )

    picks = _picked_samples(run_dir) if run_dir is not None else None
    if picks is not None:
        written.append(_plot_picks(plt, cfg, picks, out / "selections.png"))
    for key, ylabel, title, name in (
        ("selected", "public questions picked", "picks per filter and round", "selections.png"),
        (
            "mean_reward",
            "mean reward over the filter's picks",
            "mean reward per filter and round",
            "rewards.png",
        ),
    ):
        if key == "selected" and picks is not None:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.5))
        drew = False
        for k in _clients(cfg):
            for d, style in (("S", "-"), ("L", "--")):
                xs, ys = series(lambda r, k=k, d=d, key=key: r.get(key, {}).get(k, {}).get(d))
                if xs:
                    drew = True
                    who = f"LLM -> SLM {k}" if d == "S" else f"SLM {k} -> LLM"
                    label = f"$F_{{{k}}}^{{{d}}}$: {who}"  # one colour per client
                    ax.plot(xs, ys, ls=style, marker="o", color=_colour(k), label=label)
        if not drew:
            ax.text(0.5, 0.5, "no filter in this run", ha="center", transform=ax.transAxes)
            ax.plot(rounds, [0] * len(rounds), alpha=0)
        finish(fig, ax, ylabel, title, name)
    return written


def _colour(k: str) -> str:
    """Client k's colour, the same in every plot (black is the LLM's mean)."""
    return f"C{int(k) % 10}"


def _test_size(records: list[dict[str, Any]], k: str) -> int:
    """Questions in client k's test set, from the per-domain counts the run recorded."""
    for r in records:
        groups = r.get("groups", {}).get("slm", {}).get(k) or r.get("groups", {}).get(
            "llm", {}
        ).get(k)
        if groups and groups.get("domain"):
            return int(sum(n for _, n in groups["domain"].values()))
    return 0


def _picked_samples(run_dir: Path) -> dict[int, dict[str, dict[str, list[Any]]]] | None:
    """Round -> client -> direction -> the public samples picked (``selections/``), or None
    when the run picked nothing or its public set cannot be read back."""
    import json

    files = sorted((run_dir / "selections").glob("round_*.json"))
    if not files:
        return None
    from lada.config import load_config
    from lada.runner.setup import load_run_data

    try:
        cfg = load_config(run_dir / "config.yaml")
        split = Path(cfg.data.dir) if cfg.data.dir else run_dir / "data"
        if cfg.data.kind == "synthetic" and not (split / "manifest.json").is_file():
            return None
        public = {s.id: s for s in load_run_data(cfg, run_dir, record=False).public}
    except (OSError, ValueError):
        return None
    out: dict[int, dict[str, dict[str, list[Any]]]] = {}
    for f in files:
        t = int(f.stem.split("_")[1])
        sel = json.loads(f.read_text())
        out[t] = {
            k: {d: [public[i] for i in ids if i in public] for d, ids in v.items()}
            for k, v in sel.items()
        }
    out[-1] = {"P": {"all": list(public.values())}}  # all of P, for reference
    return out


def _plot_picks(plt: Any, cfg: dict[str, Any], picks: dict[int, Any], path: Path) -> Path:
    """Domains (share of all picks) and mean reasoning steps (per filter) of the picks."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    everything = picks.pop(-1)["P"]["all"]
    rounds = sorted(picks)
    domains = sorted({s.domain for s in everything})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    bottom = np.zeros(len(rounds))
    totals = [sum(len(v) for c in picks[t].values() for v in c.values()) for t in rounds]
    for j, dom in enumerate(domains):
        share = np.array(
            [
                100
                * sum(s.domain == dom for c in picks[t].values() for v in c.values() for s in v)
                / max(n, 1)
                for t, n in zip(rounds, totals, strict=True)
            ]
        )
        # domains in shades of viridis: the tab10 colours are the clients'
        colour = plt.cm.viridis(0.1 + 0.8 * j / max(len(domains) - 1, 1))
        left.bar(rounds, share, bottom=bottom, label=dom, color=colour)
        bottom += share
    left.set_xticks(rounds, [f"{t}\n{n} picks" for t, n in zip(rounds, totals, strict=True)])
    left.set_xlabel("round (picks of all filters)")
    left.set_ylabel("share of the picked questions %")
    left.set_title("domains of the picked public questions")
    left.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    for k in _clients(cfg):
        for d, style in (("S", "-"), ("L", "--")):
            pts = [
                (t, np.mean([s.num_steps for s in picks[t][k][d]]), len(picks[t][k][d]))
                for t in rounds
                if picks[t].get(k, {}).get(d)
            ]
            if pts:
                who = f"LLM -> SLM {k}" if d == "S" else f"SLM {k} -> LLM"
                right.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    ls=style,
                    marker="o" if d == "S" else "s",
                    color=_colour(k),
                    label=f"$F_{{{k}}}^{{{d}}}$: {who} ({pts[-1][2]} picks)",
                )
    right.axhline(
        np.mean([s.num_steps for s in everything]),
        color="grey",
        ls=":",
        label=f"all of P ({len(everything)} questions)",
    )
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("round")
    right.set_ylabel("mean reasoning steps of the picked questions")
    right.set_title("how hard the picks are, per filter")
    right.grid(alpha=0.3)
    right.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _base_final(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The run's config, its round-0 record and its last record (at least one training round)."""
    from lada.config import ConfigError

    cfg, records = read_run(run_dir)
    base = next((r for r in records if r["round"] == 0), None)
    if base is None or len(records) < 2:
        raise ConfigError(f"{run_dir}: needs round 0 and at least one training round recorded")
    return cfg, base, records[-1]


def _over_runs(changes: list[float]) -> dict[str, Any]:
    """Mean change, runs up and the paired 95 % t-interval (None for one run) over the runs."""
    from lada.bench.stats import paired_t_interval

    return {
        "mean_change": sum(changes) / len(changes),
        "runs_up": sum(x > 0 for x in changes),
        "interval": None if len(changes) < 2 else paired_t_interval(changes),
        "n_runs": len(changes),
    }


def _over_runs_line(label: str, s: dict[str, Any]) -> str:
    """ "  LLM: mean change -2.6 points over 3 runs, paired 95 % t-interval [...]; up in 0 of 3"."""
    iv, n = s["interval"], s["n_runs"]
    ci = "" if iv is None else f", paired 95 % t-interval [{100 * iv.lo:+.1f}, {100 * iv.hi:+.1f}]"
    return (
        f"  {label}: mean change {100 * s['mean_change']:+.1f} points over {n} runs"
        f"{ci}; up in {s['runs_up']} of {n}"
    )


def _same_last_round(ends: list[tuple[Any, int]]) -> None:
    """A clear error when the runs (run directory, last round) end at different rounds."""
    from lada.config import ConfigError

    if len({t for _, t in ends}) > 1:
        raise ConfigError(
            "the runs end at different rounds ("
            + ", ".join(f"{d}: round {t}" for d, t in ends)
            + "); compare runs at the same round"
        )


def seed_changes(run_dirs: list[Path]) -> dict[str, Any]:
    """Base (round 0) -> final change of the mean SLM and the mean LLM accuracy per run (one run
    per seed, the same config otherwise), and their paired 95 % t-intervals over the runs
    (:func:`lada.bench.stats.paired_t_interval`); accuracies as fractions."""
    runs = []
    for d in run_dirs:
        cfg, base, final = _base_final(d)
        row: dict[str, Any] = {"run": str(d), "seed": cfg.get("seed"), "round": final["round"]}
        for side in ("slm", "llm"):
            b, f = base[f"{side}_accuracy_mean"], final[f"{side}_accuracy_mean"]
            row[side] = {"base": b, "final": f, "change": f - b}
        runs.append(row)
    _same_last_round([(r["run"], r["round"]) for r in runs])
    out: dict[str, Any] = {"runs": runs}
    for side in ("slm", "llm"):
        out[side] = _over_runs([r[side]["change"] for r in runs])
    return out


def show_seeds(run_dirs: list[Path], console: Any) -> dict[str, Any]:
    """Print :func:`seed_changes` as one table: a row per run, then the mean over runs."""
    from rich.markup import escape
    from rich.table import Table

    res = seed_changes(run_dirs)
    table = Table(
        title="base (round 0) -> final round: mean accuracy %, change in points, per run",
        title_justify="left",
    )
    for col in ("run", "seed", "round"):
        table.add_column(col, overflow="fold")
    for col in ("SLM base", "SLM final", "SLM change", "LLM base", "LLM final", "LLM change"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in res["runs"]:
        cells = [escape(r["run"]), str(r["seed"]), str(r["round"])]
        for side in ("slm", "llm"):
            c = r[side]
            cells += [_pct(c["base"]), _pct(c["final"]), _pp(c["base"], c["final"])]
        table.add_row(*cells)
    console.print(table)
    for side in ("slm", "llm"):
        console.print(_over_runs_line(side.upper(), res[side]))
    return res


def _pooled(
    path: Path, record: dict[str, Any], side: str, by: str
) -> dict[str, dict[str, tuple[int, int]]]:
    """Client -> group value -> (correct, total) of ``side`` ("slm", "llm") in one round's
    ``groups``; a clear error when the round has no ``groups`` or no group ``by``."""
    from lada.config import ConfigError

    where = f"{path}: round {record['round']}"
    groups = record.get("groups")
    if not isinstance(groups, dict) or not isinstance(groups.get(side), dict):
        raise ConfigError(
            f"{where} records no `groups.{side}` (correct/total per question group), so it "
            "cannot be split by group"
        )
    out = {}
    for k, per_client in groups[side].items():
        if by not in per_client:
            have = ", ".join(sorted(per_client)) or "none"
            raise ConfigError(f"{where}: `groups.{side}.{k}` has no group {by!r} (it has: {have})")
        try:
            out[k] = {str(v): (int(c), int(n)) for v, (c, n) in per_client[by].items()}
        except (TypeError, ValueError, AttributeError):
            raise ConfigError(
                f"{where}: `groups.{side}.{k}.{by}` is not {{value: [correct, total]}}"
            ) from None
    return out


def _value_order(v: str) -> tuple[int, float, str]:
    """Numeric group values (num_steps) in numeric order, the others alphabetically, after."""
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


def group_changes(run_dirs: list[Path], by: str) -> dict[str, Any]:
    """Base (round 0) -> final change per value of the question group ``by`` (``kind``,
    ``num_steps``, ``domain``: any group the runs record in ``groups``), per run, and over the
    runs (one per seed) the mean change, the runs up and the paired 95 % t-interval
    (:func:`lada.bench.stats.paired_t_interval`), as :func:`seed_changes` does for the means.

    Each side's accuracy on a value is pooled over the clients' test sets: correct / total
    summed over the clients (SLM: every SLM on its own test set; LLM: on each client's). A
    client recorded in only one of the two rounds (e.g. it missed the last round) is left out of
    that run's pooled counts on that side and named in ``notes``. The runs must end at the same
    round; a test set whose question count for a value changed between the rounds is refused.
    Accuracies as fractions; a run without the value has no row for it."""
    from lada.config import ConfigError

    ends = []
    values: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for d in run_dirs:
        cfg, base, final = _base_final(d)
        path = d / "metrics.jsonl"
        ends.append((str(d), final["round"]))
        row_of: dict[str, dict[str, Any]] = {}
        for side in ("slm", "llm"):
            b, f = _pooled(path, base, side, by), _pooled(path, final, side, by)
            left_out = sorted(set(b) ^ set(f), key=int)
            if left_out:
                notes.append(
                    f"{d}: {side.upper()} pooled without client(s) {', '.join(left_out)} "
                    f"(recorded in only one of rounds 0 and {final['round']})"
                )
            sums: dict[str, list[int]] = {}
            for k in sorted(set(b) & set(f), key=int):
                for v in set(b[k]) | set(f[k]):
                    (cb, nb), (cf, nf) = b[k].get(v, (0, 0)), f[k].get(v, (0, 0))
                    if nb != nf:
                        raise ConfigError(
                            f"{path}: `groups.{side}.{k}.{by}.{v}` counts {nb} questions in "
                            f"round 0 but {nf} in round {final['round']}: not the same test set"
                        )
                    s = sums.setdefault(v, [0, 0, 0])
                    s[0], s[1], s[2] = s[0] + cb, s[1] + cf, s[2] + nb
            for v, (cb, cf, n) in sums.items():
                if n:
                    row = row_of.setdefault(v, {"run": str(d), "seed": cfg.get("seed")})
                    row[side] = {
                        "base": cb / n,
                        "final": cf / n,
                        "change": (cf - cb) / n,
                        "questions": n,
                    }
        for v, row in row_of.items():
            values.setdefault(v, {"runs": []})["runs"].append(row)
    _same_last_round(ends)
    for v in values.values():
        for side in ("slm", "llm"):
            changes = [r[side]["change"] for r in v["runs"] if side in r]
            v[side] = _over_runs(changes) if changes else None
    return {
        "by": by,
        "round": ends[0][1],
        "values": {v: values[v] for v in sorted(values, key=_value_order)},
        "notes": notes,
    }


def show_groups(run_dirs: list[Path], by: str, console: Any) -> dict[str, Any]:
    """Print :func:`group_changes` as one table (a row per group value and run), then per value
    and side the mean change over the runs, in :func:`show_seeds`' format."""
    from rich.markup import escape
    from rich.table import Table

    res = group_changes(run_dirs, by)
    table = Table(
        title=f"by {by}: base (round 0) -> final (round {res['round']}): accuracy % pooled over "
        "the clients' test sets (n: questions), change in points, per run",
        title_justify="left",
    )
    for col in (by, "run", "seed"):
        table.add_column(col, overflow="fold")
    for side in ("SLM", "LLM"):
        for col in ("n", "base", "final", "change"):
            table.add_column(f"{side} {col}", justify="right", no_wrap=True)
    for v, per in res["values"].items():
        for r in per["runs"]:
            cells = [escape(v), escape(r["run"]), str(r["seed"])]
            for side in ("slm", "llm"):
                c = r.get(side)
                cells += (
                    ["-"] * 4
                    if c is None
                    else [
                        str(c["questions"]),
                        _pct(c["base"]),
                        _pct(c["final"]),
                        _pp(c["base"], c["final"]),
                    ]
                )
            table.add_row(*cells)
        table.add_section()
    console.print(table)
    for v, per in res["values"].items():
        for side in ("slm", "llm"):
            if per[side] is not None:
                console.print(
                    _over_runs_line(f"{escape(by)}={escape(v)} {side.upper()}", per[side])
                )
    for note in res["notes"]:
        console.print(f"  [yellow]note[/]: {escape(note)}")
    return res


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
    paths = plot_run(cfg, records, Path(plots) if plots else run_dir / "plots", run_dir)
    console.print("plots: " + ", ".join(str(p) for p in paths))
    return paths
