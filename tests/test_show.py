"""`lada show` and summary.json: base -> final changes, PNG curves, whole model names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


def _with_groups(run_dir: Path, final_correct: dict[str, dict[str, int]]) -> None:
    """Give make_run's rounds `groups` by kind: every client has 10 general and 20 private test
    questions; round 0 gets 2 general and 1 private right on each client, on both sides; the last
    round on each side ``final_correct[side][kind]`` on every client."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for r in records:
        right = (
            {"slm": {"general": 2, "private": 1}, "llm": {"general": 2, "private": 1}}
            if r["round"] == 0
            else final_correct
        )
        r["groups"] = {
            side: {
                str(k): {
                    "kind": {
                        "general": [right[side]["general"], 10],
                        "private": [right[side]["private"], 20],
                    },
                    "domain": {"law": [right[side]["general"] + right[side]["private"], 30]},
                }
                for k in range(3)
            }
            for side in ("slm", "llm")
        }
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_show_by_kind_pools_clients_and_pairs_over_runs(tmp_path: Path, capsys) -> None:
    from lada.bench.stats import paired_t_interval
    from lada.runner.show import group_changes

    runs = []
    # LLM general: 2/10 on each client at round 0 -> 1, 2, 4 of 10 at the end (3 seeds)
    for i, llm_general in enumerate((1, 2, 4)):
        d = tmp_path / f"s{i}"
        make_run(d)
        _with_groups(
            d,
            {
                "slm": {"general": 3, "private": 5 + i},
                "llm": {"general": llm_general, "private": 1},
            },
        )
        runs.append(d)
    res = group_changes(runs, "kind")
    assert res["round"] == 2 and list(res["values"]) == ["general", "private"]
    general = res["values"]["general"]
    first = general["runs"][0]
    # pooled over the 3 clients: 6/30 -> 3/30 (LLM), 6/30 -> 9/30 (SLM)
    assert first["llm"]["questions"] == 30 and abs(first["llm"]["base"] - 0.2) < 1e-12
    assert abs(first["llm"]["final"] - 0.1) < 1e-12 and abs(first["llm"]["change"] + 0.1) < 1e-12
    assert abs(first["slm"]["change"] - 0.1) < 1e-12
    llm_changes = [r["llm"]["change"] for r in general["runs"]]
    assert [round(c, 6) for c in llm_changes] == [-0.1, 0.0, 0.2]
    s = general["llm"]
    assert abs(s["mean_change"] - 0.1 / 3) < 1e-12 and s["runs_up"] == 1 and s["n_runs"] == 3
    iv = paired_t_interval(llm_changes)
    assert (s["interval"].lo, s["interval"].hi) == (iv.lo, iv.hi) and iv.n_seeds == 3
    private_slm = res["values"]["private"]["slm"]  # 3/60 -> 15, 18, 21 of 60: +20, +25, +30
    assert abs(private_slm["mean_change"] - 0.25) < 1e-12 and private_slm["runs_up"] == 3

    assert main(["show", *map(str, runs), "--by", "kind"]) == 0
    out = capsys.readouterr().out
    assert "20.0" in out and "10.0" in out and "-10.0" in out  # LLM general, seed 0
    lo, hi = 100 * iv.lo, 100 * iv.hi
    assert (
        f"kind=general LLM: mean change +3.3 points over 3 runs, "
        f"paired 95 % t-interval [{lo:+.1f}, {hi:+.1f}]; up in 1 of 3"
    ) in out
    assert "kind=private SLM: mean change +25.0 points over 3 runs" in out
    assert "up in 3 of 3" in out


def test_show_by_refuses_runs_without_groups_or_the_group(tmp_path: Path, capsys) -> None:
    make_run(tmp_path / "plain")  # records no `groups`
    assert main(["show", str(tmp_path / "plain"), "--by", "kind"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "plain" / "metrics.jsonl") in err and "groups" in err
    assert len(err.strip().splitlines()) == 1

    make_run(tmp_path / "grouped")
    _with_groups(tmp_path / "grouped", {s: {"general": 1, "private": 1} for s in ("slm", "llm")})
    assert main(["show", str(tmp_path / "grouped"), "--by", "num_steps"]) == 2
    err = capsys.readouterr().err
    assert "no group 'num_steps'" in err and "domain, kind" in err


@pytest.mark.parametrize("by", [[], ["--by", "kind"]])
def test_show_refuses_runs_ending_at_different_rounds(tmp_path: Path, capsys, by) -> None:
    runs = []
    for i in range(2):
        d = tmp_path / f"s{i}"
        make_run(d)
        _with_groups(d, {s: {"general": 1, "private": 1} for s in ("slm", "llm")})
        runs.append(d)
    lines = (runs[1] / "metrics.jsonl").read_text().splitlines()
    (runs[1] / "metrics.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # ends at round 1
    assert main(["show", *map(str, runs), *by]) == 2
    err = capsys.readouterr().err
    assert "different rounds" in err and f"{runs[0]}: round 2" in err
    assert f"{runs[1]}: round 1" in err


def test_show_by_leaves_out_a_client_missing_from_the_last_round(tmp_path: Path, capsys) -> None:
    from lada.runner.show import group_changes

    d = tmp_path / "run"
    make_run(d)
    _with_groups(d, {s: {"general": 4, "private": 1} for s in ("slm", "llm")})
    records = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    del records[-1]["groups"]["slm"]["1"]  # e.g. SLM 1 missed the last round
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    res = group_changes([d], "kind")
    slm = res["values"]["general"]["runs"][0]["slm"]
    assert slm["questions"] == 20 and abs(slm["change"] - 0.2) < 1e-12  # clients 0 and 2
    assert res["values"]["general"]["runs"][0]["llm"]["questions"] == 30
    assert any("SLM pooled without client(s) 1" in n for n in res["notes"])
