"""results.csv (one row per run) and results.md (mean ± std tables) from the run directories.

Everything is read back from each run's metrics.jsonl: accuracies of the last round, the
bytes the engine measured on the wire (mean over the trained rounds, up + down), and the wall
seconds the runner measured per round (summed, so a resumed run counts only work done).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from lada.bench.suite import ALPHAS, BASELINES, HOSTS, LAMBDAS, RunSpec
from lada.runner.metrics_file import read_metrics

MAX_CLIENTS = 3
COLUMNS = [
    "host",
    "method",
    "scenario",
    "seed",
    "rounds",
    *[f"slm_acc_{k}" for k in range(MAX_CLIENTS)],
    "slm_acc_mean",
    "llm_acc_mean",
    "mb_per_round",
    "wall_s",
    "run",
]


def result_row(spec: RunSpec, run_dir: Path) -> dict[str, Any] | None:
    recs = read_metrics(run_dir)
    trained = [r for r in recs if r["round"] >= 1]
    if not trained:
        return None
    last = trained[-1]
    row: dict[str, Any] = {
        "host": spec.host,
        "method": spec.method,
        "scenario": spec.scenario,
        "seed": spec.seed,
        "rounds": last["round"],
        "slm_acc_mean": last["slm_accuracy_mean"],
        "llm_acc_mean": last["llm_accuracy_mean"],
        "mb_per_round": float(
            np.mean([(r["bytes"]["up"] + r["bytes"]["down"]) / 1e6 for r in trained])
        ),
        "wall_s": float(sum(r["seconds"].get("total", 0.0) for r in recs)),
        "run": spec.name,
    }
    for k in range(MAX_CLIENTS):
        row[f"slm_acc_{k}"] = last["slm_accuracy"].get(str(k), "")
    return row


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt_csv(r.get(k, "")) for k in COLUMNS})


def _fmt_csv(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def _ms(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    vals = [float(v) for v in values if v not in ("", None)]
    if not vals:
        return "–"
    m = np.mean(vals) * scale
    if len(vals) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {np.std(vals, ddof=1) * scale:.{digits}f}"


def _group(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def _method_order(methods: set[str]) -> list[str]:
    order = ["alone", "alone_s5", *BASELINES, "lada", "lada_keep", "no_cd", "no_explore"]
    order += [f"alpha={a}" for a in ALPHAS] + [f"lambda={x}" for x in LAMBDAS]
    return [m for m in order if m in methods] + sorted(methods - set(order))


METHOD_LABEL = {
    "alone": "host alone",
    "alone_s5": "host alone, LLM step 1e-3 × 15",
    "all": "all of P",
    "random": "random",
    "random_labelled": "random, SLM side among labelled P (ours)",
    "random_teachable": "random among LaDa's candidates (ours)",
    "perplexity": "perplexity",
    "ifd": "IFD",
    "min_ce": "min-CE (FedMKT)",
    "lada": "**LaDa**",
    "lada_keep": "LaDa, host keeps all of P (ours)",
    "no_cd": "LaDa w/o contrastive loss",
    "no_explore": "LaDa w/o exploration",
}


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(r[key]) for r in rows if r[key] not in ("", None)]
    return float(np.mean(vals)) if vals else None


def main_table(rows: list[dict[str, Any]], hosts: list[str], scenarios: list[str]) -> str:
    """Hosts x methods by scenario, with a "Δ LaDa − alone" row per host (difference of the
    means, in points). MB/round is the first scenario (in ``scenarios`` order) a host ran, named
    in the cell when it is not the first column's."""
    head = "| host | method | " + " | ".join(f"{s} SLM % | {s} LLM %" for s in scenarios)
    lines = [head + " | MB/round |", "|" + "---|" * (3 + 2 * len(scenarios))]
    for host in hosts:
        hrows = _group(rows, host=host)
        mb_scen = next((s for s in scenarios if _group(hrows, scenario=s)), None)
        methods = _method_order({r["method"] for r in hrows if r["method"] in METHOD_LABEL})
        for m in methods:
            if m in ("no_cd", "no_explore"):
                continue
            cells = []
            for s in scenarios:
                g = _group(hrows, method=m, scenario=s)
                cells += [_ms([r["slm_acc_mean"] for r in g]), _ms([r["llm_acc_mean"] for r in g])]
            g_mb = _group(hrows, method=m, scenario=mb_scen)
            mb = _ms([r["mb_per_round"] for r in g_mb], scale=1.0, digits=3)
            if mb != "–" and mb_scen != scenarios[0]:
                mb += f" ({mb_scen})"
            lines.append(
                f"| {host} | {METHOD_LABEL.get(m, m)} | " + " | ".join(cells) + f" | {mb} |"
            )
        for m, label in (("lada", "Δ LaDa − alone"), ("lada_keep", "Δ LaDa (keeps all) − alone")):
            if "alone" not in methods or m not in methods:
                continue
            cells = []
            for s in scenarios:
                for key in ("slm_acc_mean", "llm_acc_mean"):
                    a = _mean(_group(hrows, method="alone", scenario=s), key)
                    b = _mean(_group(hrows, method=m, scenario=s), key)
                    cells.append("–" if a is None or b is None else f"{100 * (b - a):+.1f}")
            lines.append(f"| {host} | {label} | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def simple_table(rows: list[dict[str, Any]], methods: list[str], title_col: str) -> str:
    lines = [
        f"| {title_col} | SLM acc % | LLM acc % | MB/round | runs |",
        "|---|---|---|---|---|",
    ]
    for m in methods:
        g = _group(rows, method=m)
        if not g:
            continue
        lines.append(
            f"| {METHOD_LABEL.get(m, m)} | {_ms([r['slm_acc_mean'] for r in g])} | "
            f"{_ms([r['llm_acc_mean'] for r in g])} | "
            f"{_ms([r['mb_per_round'] for r in g], scale=1.0, digits=3)} | {len(g)} |"
        )
    return "\n".join(lines)


def _rounds_reached(rows: list[dict[str, Any]]) -> str:
    """ "5" when every run reached round 5, else e.g. "2–5 (partial runs included)"."""
    got = sorted({int(r["rounds"]) for r in rows})
    if not got:
        return "–"
    if len(got) == 1:
        return str(got[0])
    return f"{got[0]}–{got[-1]} (partial runs included: compare within the paired tables)"


def write_markdown(
    rows: list[dict[str, Any]],
    path: Path,
    title: str,
    command: str,
    skipped: list[str],
    paired: str = "",
    lift: str = "",
    kinds: str = "",
) -> None:
    """results.md: the main table, ``paired`` (Δ with CIs, lada.bench.compare), ``lift``
    (filter lift), then ablation and sensitivity tables."""
    hosts = [h for h in HOSTS if _group(rows, host=h)]
    scenarios = [
        s for s in ("default", "hetero", "homo", "one2one", "small_llm") if _group(rows, scenario=s)
    ]
    seeds = sorted({r["seed"] for r in rows})
    parts = [
        f"# {title}",
        "",
        f"Command: `{command}`  ",
        f"Runs: {len(rows)}; seeds: {seeds}; rounds reached: {_rounds_reached(rows)}. Cells: "
        "each run's last completed round's accuracy in %, mean ± std over "
        "seeds (a single value when there is one seed); SLM = mean over clients of each SLM on "
        "its own test set, LLM = the LLM's mean over the clients' test sets. MB/round: bytes "
        "measured on the wire (up + down), mean over rounds.",
        "",
        "## Main table",
        "",
        main_table(rows, hosts, scenarios),
    ]
    if paired:
        parts += [
            "",
            "## Paired differences (last round, 95 % CI over seeds × questions)",
            "",
            "Δ = method A − method B in accuracy points, the mean over clients of each client's "
            "difference on the same test questions, same seeds. The interval is a two-level "
            "percentile bootstrap (seeds, then questions within each seed and client; "
            "`lada.bench.stats`). Verdict: **win** if the interval lies above 0, **loss** if "
            "below, tie if it holds 0.",
            "",
            paired,
        ]
    if kinds:
        parts += [
            "",
            "### By kind of test question",
            "",
            "private: the question needs the client's private facts (and several steps); "
            "general: general multi-step reasoning in the client's domain (docs/testbed.md).",
            "",
            kinds,
        ]
    if lift:
        parts += [
            "",
            "## Filter lift (LaDa's picks − random allocation's picks)",
            "",
            "Mean realised reward of the picks (spec §3's r_i = α·σ(r_batch) + (1 − α)·σ(g_i), "
            "in (0, 1), computed from each learner's saved losses alike for both methods), LaDa "
            "minus random allocation, same seeds, in reward points (× 100), with 95 % CIs "
            "(seeds, then picks). "
            "`SLM k ← LLM`: SLM k learning from the LLM's paths; `LLM ← SLM k`: the LLM "
            "learning from SLM k's paths. Round 1 is LaDa's k-means cold start.",
            "",
            lift,
        ]
    abl = _group(rows, host="sft", scenario="hetero")
    abl_methods = [m for m in ("lada", "all", "no_cd", "no_explore") if _group(abl, method=m)]
    if len(abl_methods) > 1:
        parts += [
            "",
            "## Ablation (host sft, hetero)",
            "",
            '"all of P" is LaDa without the filter.',
            "",
            simple_table(abl, abl_methods, "variant"),
        ]
    sens = [
        m for m in _method_order({r["method"] for r in abl}) if m.startswith(("alpha", "lambda"))
    ]
    if sens:
        parts += [
            "",
            "## Sensitivity (host sft, hetero; α = filter.alpha, λ = distill.lambda_cd)",
            "",
            "Defaults α = 0.5 and λ = 1.0 are the LaDa row.",
            "",
            simple_table(abl, ["lada", *sens], "setting"),
        ]
    if skipped:
        parts += ["", "## Not run", ""] + [f"- {s}" for s in skipped]
    path.write_text("\n".join(parts) + "\n")
