"""The bench's paired comparisons as markdown: Δ accuracy with 95 % CIs and verdicts, and the
filter lift (statistics: :mod:`lada.bench.stats`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from lada.bench.stats import Estimate, filter_lift, paired_delta
from lada.bench.suite import RunSpec

# (method A, method B, label): A − B, each where both ran
COMPARISONS = [
    ("lada", "alone", "LaDa − host alone"),
    ("lada", "random", "LaDa − random allocation"),
    ("lada", "random_labelled", "LaDa − random among labelled P (SLM side)"),
    ("lada", "alone_s5", "LaDa − host alone (its LLM step 1e-3 × 15)"),
    ("lada", "all", "LaDa − all of P"),
    ("lada_keep", "alone", "LaDa (host keeps all of P) − host alone"),
    ("cd_mean", "lada", "per-token L_CD − LaDa (per-path L_CD)"),
    ("no_cd", "lada", "w/o L_CD − LaDa"),
    ("no_explore", "lada", "w/o exploration − LaDa"),
]


def _by_cell(specs: list[RunSpec], runs_dir: Path) -> dict[tuple[str, str, str], dict[int, Path]]:
    """(host, scenario, method) -> {seed: run dir} for runs with at least one complete round
    (finished or partial)."""
    out: dict[tuple[str, str, str], dict[int, Path]] = {}
    for s in specs:
        d = runs_dir / s.name
        if (d / "state.json").exists() and (d / "config.yaml").exists():
            out.setdefault((s.host, s.scenario, s.method), {})[s.seed] = d
    return out


def _pair(a: dict[int, Path], b: dict[int, Path]) -> tuple[list[Path], list[Path]]:
    seeds = sorted(set(a) & set(b))
    return [a[s] for s in seeds], [b[s] for s in seeds]


def _cell(est: Estimate | None) -> tuple[str, str]:
    if est is None:
        return "–", "–"
    return est.fmt(), f"**{est.verdict}**" if est.verdict != "tie" else "tie"


def paired_table(specs: list[RunSpec], runs_dir: Path) -> str:
    """One row per (host, scenario, comparison) with both methods run: last-round Δ accuracy
    in points with its 95 % CI (seeds × questions) and verdict, SLM and LLM, and the seeds."""
    cells = _by_cell(specs, runs_dir)
    lines = [
        "| host | scenario | comparison | SLM Δ pts [95 % CI] | SLM | LLM Δ pts [95 % CI] | LLM | "
        "seeds | round |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(h, sc) for h, sc, _ in cells}, key=lambda k: (_order(k[0]), k[1]))
    for host, scen in keys:
        for a, b, label in COMPARISONS:
            if (host, scen, a) not in cells or (host, scen, b) not in cells:
                continue
            ra, rb = _pair(cells[host, scen, a], cells[host, scen, b])
            slm, llm = paired_delta(ra, rb, "slm"), paired_delta(ra, rb, "llm")
            if slm is None and llm is None:
                continue
            est = slm or llm
            assert est is not None
            lines.append(
                f"| {host} | {scen} | {label} | "
                + " | ".join([*_cell(slm), *_cell(llm)])
                + f" | {est.n_seeds} | {_rounds(est.rounds, ra[0])} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def _rounds(rounds: tuple[int, ...], run_dir: Path) -> str:
    """The round(s) compared, "5" when every seed finished the plan, else e.g. "3, 2 (partial)"."""
    planned = int((yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("rounds", 0))
    text = ", ".join(str(t) for t in rounds)
    if len(set(rounds)) == 1 and rounds[0] == planned:
        return str(planned)
    return f"{text} of {planned} (partial)"


KINDS = ("private", "general")


def kind_table(specs: list[RunSpec], runs_dir: Path) -> str:
    """LaDa − host alone and LaDa − random by kind of test question (the testbed's "private":
    needs a client's private facts; "general": general multi-step reasoning in the client's
    domain), same statistics as :func:`paired_table`; empty when the runs' tests carry no kind."""
    from lada.bench.stats import question_bits, question_kinds

    cells = _by_cell(specs, runs_dir)
    lines = [
        "| host | scenario | comparison | questions | SLM Δ pts [95 % CI] | SLM | "
        "LLM Δ pts [95 % CI] | LLM | seeds | round |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(h, sc) for h, sc, _ in cells}, key=lambda k: (_order(k[0]), k[1]))
    for host, scen in keys:
        for a, b, label in COMPARISONS[:3]:  # vs the host alone (both steps) and random
            if (host, scen, a) not in cells or (host, scen, b) not in cells:
                continue
            ra, rb = _pair(cells[host, scen, a], cells[host, scen, b])
            try:  # does this run's test data carry kinds?
                q = question_bits(ra[0], 1)
                k0 = next(iter(q["ids_sha1"]))
                if not set(question_kinds(ra[0], k0, str(q["ids_sha1"][k0]))) & set(KINDS):
                    continue
            except (FileNotFoundError, ValueError, StopIteration):
                continue
            for kind in KINDS:
                slm = paired_delta(ra, rb, "slm", kind)
                llm = paired_delta(ra, rb, "llm", kind)
                est = slm or llm
                if est is None:
                    continue
                lines.append(
                    f"| {host} | {scen} | {label} | {kind} | "
                    + " | ".join([*_cell(slm), *_cell(llm)])
                    + f" | {est.n_seeds} | {_rounds(est.rounds, ra[0])} |"
                )
    return "\n".join(lines) if len(lines) > 2 else ""


def _order(host: str) -> int:
    from lada.bench.suite import HOSTS

    return HOSTS.index(host) if host in HOSTS else len(HOSTS)


def _learner_label(run_dir: Path, k: str, direction: str) -> str:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    clients = cfg.get("clients") or []
    model = clients[int(k)].get("model", "?") if int(k) < len(clients) else "?"
    llm = (cfg.get("server") or {}).get("model", "LLM")
    if direction == "S":
        return f"SLM {k} ({model}) ← LLM"
    return f"LLM ({llm}) ← SLM {k}"


def lift_table(specs: list[RunSpec], runs_dir: Path) -> str:
    """Filter lift per (host, scenario, learner): the mean realised reward of LaDa's picks minus
    random allocation's, per round and over all rounds, with 95 % CIs; verdict over all rounds."""
    cells = _by_cell(specs, runs_dir)
    blocks = []
    keys = sorted({(h, sc) for h, sc, _ in cells}, key=lambda k: (_order(k[0]), k[1]))
    for host, scen in keys:
        if (host, scen, "lada") not in cells or (host, scen, "random") not in cells:
            continue
        ra, rb = _pair(cells[host, scen, "lada"], cells[host, scen, "random"])
        if not ra:
            continue
        lift = filter_lift(ra, rb)
        if not lift:
            continue
        rounds = sorted({t for v in lift.values() for t in v if isinstance(t, int)})
        head = f"| {host} · {scen}: learner | " + " | ".join(f"round {t}" for t in rounds)
        lines = [
            head + " | all rounds | verdict | seeds |",
            "|" + "---|" * (len(rounds) + 4),
        ]
        for (k, d), res in sorted(lift.items(), key=lambda kv: (int(kv[0][0]), kv[0][1] != "S")):
            cols = [res[t].fmt(scale=100.0, digits=2) if t in res else "–" for t in rounds]
            tot = res.get("all")
            lines.append(
                f"| {_learner_label(ra[0], k, d)} | "
                + " | ".join(cols)
                + f" | {tot.fmt(scale=100.0, digits=2) if tot else '–'} | "
                + f"{_cell(tot)[1]} | {tot.n_seeds if tot else '–'} |"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
