"""`lada show` and summary.json: base -> final changes, PNG curves, whole model names."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from lada.cli import main
from lada.config import load_config, to_dict
from lada.runner.report import run_summary
from lada.runner.show import change_rows

LONG = "Qwen/Qwen2.5-0.5B-Instruct-a-rather-long-local-name"


def _record(t: int, slm: list[float], llm: list[float], missed: dict[str, str] | None = None):
    sel = {} if t == 0 else {str(k): {"S": 5 + k, "L": 3} for k in range(len(slm))}
    rew = {} if t == 0 else {str(k): {"S": 0.5 + 0.1 * t, "L": 0.4} for k in range(len(slm))}
    missed = missed or {}
    slm_acc = {str(k): a for k, a in enumerate(slm) if str(k) not in missed}
    return {
        "round": t,
        "slm_accuracy": slm_acc,
        "slm_accuracy_mean": sum(slm_acc.values()) / len(slm_acc),
        "llm_accuracy": {str(k): a for k, a in enumerate(llm)},
        "llm_accuracy_mean": sum(llm) / len(llm),
        "client_domains": {str(k): ["pharma", "law"] for k in range(len(slm))},
        "selected": sel,
        "mean_reward": rew,
        "missed": missed,
        "seconds": {"total": 10.0 + t},
        "bytes": {"up": 100, "down": 200},
    }


def make_run(run_dir: Path) -> list[dict]:
    cfg = load_config(None, [f"server.model={LONG}", "rounds=2"])
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    records = [
        _record(0, [0.10, 0.20, 0.30], [0.043, 0.05, 0.04]),
        _record(1, [0.15, 0.20, 0.35], [0.040, 0.05, 0.03], {"1": "timeout after 5s"}),
        _record(2, [0.25, 0.18, 0.40], [0.033, 0.04, 0.02]),
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_show_prints_changes_and_writes_pngs(tmp_path: Path, capsys) -> None:
    make_run(tmp_path / "run")
    assert main(["show", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert LONG in out  # the LLM's whole name, not clipped
    assert "+15.0" in out and "-2.0" in out  # SLM 0: 10 -> 25 %, SLM 1: 20 -> 18 %
    assert "-1.0" in out and "-1.3" in out  # LLM on client 0: 4.3 -> 3.3 %; its mean: -1.3
    assert "client 1 missed round 1" in out and "timeout after 5s" in out
    for name in ("accuracy.png", "selections.png", "rewards.png"):
        data = (tmp_path / "run" / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_show_change_rows_every_model() -> None:
    cfg = to_dict(load_config(None, [f"server.model={LONG}"]))
    records = [
        _record(0, [0.1, 0.2, 0.3], [0.043, 0.05, 0.04]),
        _record(2, [0.25, 0.18, 0.4], [0.033, 0.04, 0.02]),
    ]
    rows = change_rows(cfg, records)
    assert [r["who"] for r in rows] == ["SLM 0", "SLM 1", "SLM 2", "LLM", "LLM", "LLM", "LLM"]
    llm_mean = rows[3]
    assert llm_mean["model"] == LONG and llm_mean["test set"] == "mean over clients"
    assert round(100 * (llm_mean["final"] - llm_mean["base"]), 1) == -1.3


def test_show_refuses_a_folder_without_a_run(tmp_path: Path, capsys) -> None:
    assert main(["show", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_summary_has_base_final_change_time_and_missed(tmp_path: Path) -> None:
    records = make_run(tmp_path / "run")
    cfg = load_config(tmp_path / "run" / "config.yaml")
    s = run_summary(records, cfg)
    assert s["base"]["slm_accuracy"] == {"0": 0.10, "1": 0.20, "2": 0.30}
    assert s["final"]["slm_accuracy"]["0"] == 0.25
    assert abs(s["change"]["slm_accuracy"]["0"] - 0.15) < 1e-12
    assert abs(s["change"]["llm_accuracy_mean"] - (0.031 - 0.04433333333333333)) < 1e-9
    assert s["missed"] == {"1": [{"round": 1, "reason": "timeout after 5s"}]}
    assert s["rounds_every_client_missed"] == []
    assert s["seconds_total"] == 33.0 and s["completed_rounds"] == 2
    assert s["models"]["server"] == LONG and s["models"]["clients"]["0"] == "slm-xs"


def test_plots_show_what_was_picked_in_client_colours(tmp_path: Path, monkeypatch) -> None:
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure

    from lada.data.split import load_split, make_split
    from lada.runner.show import _picked_samples, plot_run, read_run

    run = tmp_path / "run"
    make_run(run)
    split = {"num_clients": 3, "train_per_client": 2, "test_per_client": 2, "public_size": 12}
    make_split(run / "data", seed=0, **split)
    public = load_split(run / "data").public
    (run / "selections").mkdir()
    for t in (1, 2):
        picks = {str(k): {"S": [public[k + t].id], "L": [public[k].id]} for k in range(3)}
        (run / "selections" / f"round_{t:03d}.json").write_text(json.dumps(picks))
    picked = _picked_samples(run)
    assert picked is not None and picked[2]["1"]["S"][0].id == public[3].id

    figures: dict[str, Figure] = {}
    monkeypatch.setattr(
        Figure, "savefig", lambda self, p, **k: figures.update({Path(p).name: self})
    )
    cfg, records = read_run(run)
    plot_run(cfg, records, tmp_path / "plots", run)

    acc = {
        line.get_label(): to_hex(line.get_color()) for line in figures["accuracy.png"].axes[0].lines
    }
    for k in range(3):  # the LLM on client k's test set in client k's colour
        slm = next(c for label, c in acc.items() if label.startswith(f"SLM {k} "))
        assert acc[f"LLM on client {k}'s test set"] == slm
    left, right = figures["selections.png"].axes
    assert sorted(c.get_label() for c in left.containers) == sorted({s.domain for s in public})
    assert all("picks" in t.get_text() for t in left.get_xticklabels())
    steps = {line.get_label(): list(line.get_ydata()) for line in right.lines}
    f1s = next(v for label, v in steps.items() if "SLM 1" in label and "LLM ->" in label)
    assert f1s == [public[2].num_steps, public[3].num_steps]  # what F_1^S picked, per round


def test_show_several_runs_pairs_base_to_final_over_seeds(tmp_path: Path, capsys) -> None:
    from lada.runner.show import seed_changes

    runs = []
    for i, up in enumerate((0.05, 0.02, -0.01)):
        d = tmp_path / f"s{i}"
        make_run(d)
        lines = (d / "metrics.jsonl").read_text().splitlines()
        last = json.loads(lines[-1])
        last["llm_accuracy_mean"] = json.loads(lines[0])["llm_accuracy_mean"] + up
        (d / "metrics.jsonl").write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
        runs.append(d)
    res = seed_changes(runs)
    assert [round(r["llm"]["change"], 6) for r in res["runs"]] == [0.05, 0.02, -0.01]
    assert abs(res["llm"]["mean_change"] - 0.02) < 1e-9 and res["llm"]["runs_up"] == 2
    iv = res["llm"]["interval"]
    assert iv.lo < 0.02 < iv.hi and iv.n_seeds == 3
    assert main(["show", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert "LLM: mean change +2.0 points over 3 runs" in out and "up in 2 of 3" in out
