"""Round metrics: the JSON record of metrics.jsonl, the run's summary.json, and the compact
table printed per round. Accuracies are fractions (0..1) in every file and percent (labelled
%) in every table and plot. Schema: docs/run-dir.md."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from lada.config.schema import RunConfig
from lada.federation.report import RoundReport
from lada.federation.transport import CommLog


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by None, recursively through
    dicts, lists and tuples: metrics.jsonl and summary.json stay strict JSON (no ``NaN``
    literal), and a record read back equals the record written."""
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _by_domain(llm_eval: dict[int, dict[str, Any]]) -> dict[str, float]:
    correct: dict[str, int] = {}
    total: dict[str, int] = {}
    for ev in llm_eval.values():
        for d, (c, n) in ev["groups"].get("domain", {}).items():
            correct[d] = correct.get(d, 0) + c
            total[d] = total.get(d, 0) + n
    return {d: correct[d] / total[d] for d in sorted(total) if total[d]}


def metrics_record(
    rep: RoundReport, comm: CommLog, cfg: RunConfig, domains: list[list[str]]
) -> dict[str, Any]:
    slm = {str(k): v["accuracy"] for k, v in sorted(rep.slm_eval.items())}
    llm = {str(k): v["accuracy"] for k, v in sorted(rep.llm_eval.items())}
    totals = comm.round_totals(rep.round)
    return finite_or_none(
        {
            "round": rep.round,
            "slm_accuracy": slm,
            "slm_accuracy_mean": _mean(list(slm.values())),
            "llm_accuracy": llm,  # the LLM on client k's test set
            "llm_accuracy_mean": _mean(list(llm.values())),
            "llm_accuracy_by_domain": _by_domain(rep.llm_eval),
            "client_models": {str(k): c.model for k, c in enumerate(cfg.clients)},
            "client_domains": {str(k): d for k, d in enumerate(domains)},
            "selected": {
                str(k): {d: len(ids) for d, ids in v.items()} for k, v in rep.selected.items()
            },
            "filter_mode": {str(k): v for k, v in rep.filter_mode.items()},
            # per learner (client, direction): samples of P its teacher will not teach, out of
            # the candidates before allocation (filter.mask)
            "masked": {str(k): v for k, v in rep.masked.items()},
            "mean_reward": {
                str(k): {d: r["mean_reward"] for d, r in v.items()} for k, v in rep.rewards.items()
            },
            # per filter (client, direction): score_std, n_selected, reward mean/std/drift, ...
            "filter": {str(k): v for k, v in rep.rewards.items()},
            "local_loss": {str(k): v["mean_loss"] for k, v in rep.local.items()},
            "distill": {str(k): v for k, v in rep.distill.items()},
            "bytes": {**totals, "by_task": comm.round_by_task(rep.round)},
            "seconds": rep.seconds,
            "missed": {str(k): v for k, v in rep.missed.items()},
            "rejected": {str(k): v for k, v in rep.rejected.items()},
            "groups": {
                "slm": {str(k): json.loads(v["groups"]) for k, v in rep.slm_eval.items()},
                "llm": {str(k): v["groups"] for k, v in rep.llm_eval.items()},
            },
        }
    )


def short_model_name(name: str) -> str:
    """A table label for a role's model: a folder's or hub id's last part (``/x/y/llm-xs`` ->
    ``llm-xs``, ``Qwen/Qwen2.5-0.5B-Instruct`` -> ``Qwen2.5-0.5B-Instruct``); zoo and real
    model names stay as they are."""
    return name.rstrip("/").rsplit("/", 1)[-1] or name


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def print_round(console: Any, rec: dict[str, Any], cfg: RunConfig) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = rec["round"]
    table = Table(
        title=f"round {t}"
        + (" (before training)" if t == 0 else "")
        + f"; LLM: {short_model_name(cfg.server.model)}; sel/reward S: LLM -> SLM picks, L: SLM -> LLM picks",
        title_justify="left",
    )
    for col in (
        "client",
        "model",
        "domain",
        "SLM acc %",
        "LLM acc %",
        "sel S",
        "sel L",
        "reward S",
        "reward L",
    ):
        if col in ("model", "domain"):  # whole names: fold, never clip
            table.add_column(col, justify="left", overflow="fold", min_width=len(col))
        else:
            table.add_column(col, justify="right", no_wrap=True)
    for k in range(len(cfg.clients)):
        key = str(k)
        sel = rec["selected"].get(key, {})
        rew = rec["mean_reward"].get(key, {})
        table.add_row(
            key,
            short_model_name(rec["client_models"][key]),
            ",".join(rec["client_domains"][key]),
            _pct(rec["slm_accuracy"].get(key)) if key not in rec["missed"] else "[red]missed[/]",
            _pct(rec["llm_accuracy"].get(key)),
            str(sel.get("S", "-")),
            str(sel.get("L", "-")),
            "-" if rew.get("S") is None else f"{rew['S']:.3f}",
            "-" if rew.get("L") is None else f"{rew['L']:.3f}",
        )
    console.print(table)
    b = rec["bytes"]
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in rec["seconds"].items())
    console.print(
        f"  mean SLM {_pct(rec['slm_accuracy_mean'])}% | mean LLM {_pct(rec['llm_accuracy_mean'])}%"
        f" | up {b['up'] / 1e6:.2f} MB, down {b['down'] / 1e6:.2f} MB | {phases}"
    )
    for k, why in rec["missed"].items():  # a client's text: never markup
        console.print(f"  [red]client {escape(str(k))} missed round {t}[/]: {escape(str(why))}")


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def round_eta(records: list[dict[str, Any]], t: int, rounds: int) -> float | None:
    """Seconds left in the run when training round ``t`` starts: the mean wall time of the
    training rounds recorded so far times the rounds left (``t``..``rounds``); None before any
    training round was timed. Round 0 (evaluation only) is not a training round's measure."""
    took = [r["seconds"]["total"] for r in records if r["round"] > 0 and "total" in r["seconds"]]
    if not took:
        return None
    return float(np.mean(took)) * (rounds - t + 1)


def print_round_start(console: Any, records: list[dict[str, Any]], t: int, rounds: int) -> None:
    """``round k/N`` (round 0: the base evaluation) with the run's estimated time left."""
    if t == 0:
        console.print(f"[bold]round 0/{rounds}[/]: evaluating the base models")
        return
    eta = round_eta(records, t, rounds)
    if eta is None:
        left = "run ETA after this round"
    else:
        import datetime as dt

        at = (dt.datetime.now() + dt.timedelta(seconds=eta)).strftime("%H:%M")
        left = f"run ETA {_duration(eta)} (~{at})"
    console.print(f"[bold]round {t}/{rounds}[/]: training; {left}")


def print_final(console: Any, rec: dict[str, Any], cfg: RunConfig) -> None:
    """The last round's accuracy by client and number of reasoning steps, SLM and LLM side by
    side: where the learnability gap shows."""
    from rich.table import Table

    groups = rec.get("groups", {})
    steps = sorted(
        {int(s) for side in groups.values() for g in side.values() for s in g.get("num_steps", {})}
    )
    if not steps:
        return
    table = Table(
        title=f"round {rec['round']}: accuracy % by number of steps (SLM on its test set | LLM on it)",
        title_justify="left",
    )
    table.add_column("client")
    table.add_column("model", overflow="fold")  # whole names (the LLM's included)
    for s in steps:
        table.add_column(f"{s}", justify="right")
    for k in range(len(cfg.clients)):
        key = str(k)
        for side, model in (("slm", rec["client_models"][key]), ("llm", cfg.server.model)):
            label = short_model_name(model)
            g = groups.get(side, {}).get(key, {}).get("num_steps", {})
            cells = []
            for s in steps:
                c, n = g.get(str(s), (0, 0))
                cells.append(f"{100 * c / n:.0f}" if n else "-")
            table.add_row(key if side == "slm" else "", label, *cells)
    console.print(table)


def _accuracies(rec: dict[str, Any] | None) -> dict[str, Any]:
    keys = ("slm_accuracy", "slm_accuracy_mean", "llm_accuracy", "llm_accuracy_mean")
    return {k: (rec or {}).get(k) for k in keys}


def _change(base: Any, final: Any) -> Any:
    """final − base, key by key (None where either side is missing)."""
    if isinstance(base, dict) and isinstance(final, dict):
        return {k: _change(base.get(k), final.get(k)) for k in sorted(set(base) | set(final))}
    if base is None or final is None:
        return None
    return final - base


def run_summary(records: list[dict[str, Any]], cfg: RunConfig) -> dict[str, Any]:
    """summary.json: base (round 0) and final accuracies and their change, who missed which
    round (and whose replies were rejected, why), wall time and bytes (docs/run-dir.md)."""
    missed: dict[str, list[dict[str, Any]]] = {}
    rejected: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        for k, why in r.get("missed", {}).items():
            missed.setdefault(k, []).append({"round": r["round"], "reason": why})
        for k, why in r.get("rejected", {}).items():
            rejected.setdefault(k, []).append({"round": r["round"], "reason": why})
    final = records[-1] if records else {}
    base = next((r for r in records if r["round"] == 0), None)
    n = len(cfg.clients)
    return {
        "rounds": cfg.rounds,
        "completed_rounds": final.get("round", 0),
        "unit": "accuracy: fraction of test samples answered correctly (0..1)",
        "models": {
            "server": cfg.server.model,
            "clients": {str(k): c.model for k, c in enumerate(cfg.clients)},
        },
        "base": _accuracies(base),
        "final": _accuracies(final),
        "change": _change(_accuracies(base), _accuracies(final)) if base else None,
        "missed": missed,
        "rejected": rejected,  # replies that failed validation (their senders are in missed)
        "rounds_every_client_missed": [
            r["round"] for r in records if n and len(r.get("missed", {})) >= n
        ],
        "seconds_total": sum(r.get("seconds", {}).get("total", 0.0) for r in records),
        "bytes_total": sum(r["bytes"]["up"] + r["bytes"]["down"] for r in records),
    }
