"""Common mistakes are caught before anything starts: each one exits non-zero with a one-line
message naming the key (and the fix), and leaves no run directory. Run as a user would, in a
subprocess. (How fast: benchmarks/cli_errors.py; not asserted here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lada.config import RunConfig, to_dict

SRC = Path(__file__).resolve().parents[1] / "src"


def lada(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cwd / "no-hub-cache"),
    }
    return subprocess.run(
        [sys.executable, "-m", "lada.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


MISTAKES = [
    # (override, text the one-line message must contain)
    ("clients.0.model=slm-xxs", ["clients.0.model", "'slm-xxs'", "did you mean", "slm-xs"]),
    ("clients.0.model=./no/such/folder", ["clients.0.model", "no such folder"]),
    ("server.model=Org/not-cached", ["server.model", "offline", "not in the cache"]),
    ("local.optim.lr=-1e-3", ["local.optim.lr", "-0.001", "must be > 0"]),
    ("filter.budget=0", ["filter.budget", "= 0", ">= 1 or null"]),
    ("filter.budget=5000", ["filter.budget", "exceeds |P| = 1000"]),
    ("rounds=-3", ["'rounds' = -3", ">= 1"]),
    ("eval.limit=-1", ["eval.limit", "= -1"]),
    ("distill.beta=-5", ["distill.beta", "-5.0", "> 0"]),
    ("local.optim.batch_size=0", ["local.optim.batch_size", ">= 1"]),
    ("clients.5.model=slm-s", ["clients.5", "3 item(s)", "index up to 3"]),
    ("filter.budgt=3", ["filter.budgt", "unknown key", "did you mean 'filter.budget'"]),
    ("host=fedcott", ["'host'", "did you mean 'fedcot'"]),
    ("filter.alpha=1.5", ["filter.alpha", "1.5", "[0, 1]"]),  # a probability
    ("rounds=abc", ["'rounds'", "expected an integer", "'abc'"]),  # a wrong type
    ("limits.max_message_bytes=0", ["limits.max_message_bytes", ">= 1024"]),
]


@pytest.mark.parametrize(("override", "needles"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_run_mistake_is_one_clear_line_and_no_run_dir(
    tmp_path: Path, override: str, needles: list[str]
) -> None:
    res = lada("run", "--out", "r", override, cwd=tmp_path)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: config key") or lines[0].startswith("error: override")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (tmp_path / "r").exists()


def test_all_mistakes_at_once(tmp_path: Path) -> None:
    res = lada("run", "--out", "r", "rounds=-3", "distill.beta=-5", "eval.limit=0", cwd=tmp_path)
    assert res.returncode != 0
    err = res.stderr
    assert "'rounds' = -3" in err and "distill.beta" in err and "eval.limit" in err
    assert not (tmp_path / "r").exists()


def _recorded_run(run_dir: Path, **changes: object) -> None:
    """A run directory as `lada run` leaves it after round 1 (config + state)."""
    cfg = to_dict(RunConfig())
    cfg.update(changes)
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (run_dir / "state.json").write_text(json.dumps({"last_complete_round": 1}))


def test_resume_refuses_overrides_that_change_the_run(tmp_path: Path) -> None:
    _recorded_run(tmp_path / "r")
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    res = lada("run", "--resume", "--out", "r", "rounds=3", "filter.budget=50", cwd=tmp_path)
    assert res.returncode != 0
    line = res.stderr.strip()
    assert "--resume" in line and "rounds (5 -> 3)" in line and "filter.budget (100 -> 50)" in line
    assert "rounds may only grow" in line
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before


def test_resume_without_a_run_is_a_clear_error(tmp_path: Path) -> None:
    res = lada("run", "--resume", "--out", "nothing", cwd=tmp_path)
    assert res.returncode != 0 and "nothing to resume" in res.stderr
    assert not (tmp_path / "nothing").exists()


def test_new_run_refuses_a_directory_that_holds_a_run(tmp_path: Path) -> None:
    _recorded_run(tmp_path / "r")
    res = lada("run", "--out", "r", cwd=tmp_path)
    assert res.returncode != 0 and "already holds a run" in res.stderr and "--resume" in res.stderr


def test_data_make_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    small = ["num_clients=1", "train_per_client=3", "test_per_client=2", "public_size=4"]
    assert lada("data", "make", "--out", "d", "--seed", "1", *small, cwd=tmp_path).returncode == 0
    files = {p: p.read_bytes() for p in (tmp_path / "d").rglob("*") if p.is_file()}
    res = lada("data", "make", "--out", "d", "--seed", "2", *small, cwd=tmp_path)
    assert res.returncode != 0 and "--force" in res.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "d").rglob("*") if p.is_file()} == files
    res = lada("data", "make", "--out", "d", "--seed", "2", "--force", *small, cwd=tmp_path)
    assert res.returncode == 0
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["seed"] == 2


def test_version_and_help_on_every_flag(tmp_path: Path) -> None:
    from lada import __version__
    from lada.cli import build_parser

    res = lada("--version", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == f"lada {__version__}"
    assert "examples:" in lada("--help", cwd=tmp_path).stdout

    def walk(parser):  # every flag of every (sub)command has a help text
        for action in parser._actions:
            if action.option_strings or action.dest not in ("help",):
                if getattr(action, "choices", None) and isinstance(action.choices, dict):
                    for sub in action.choices.values():
                        yield from walk(sub)
                elif action.dest != "help":
                    yield parser.prog, action

    missing = [
        f"{prog} {a.option_strings or a.dest}"
        for prog, a in walk(build_parser())
        if not a.help and a.dest not in ("command", "sub")
    ]
    assert not missing, missing
    assert len(list(walk(build_parser()))) > 40  # the walk does reach the subcommands


def test_run_exits_non_zero_when_every_client_misses_a_round(
    tmp_path: Path, tiny_overrides: list[str], capsys
) -> None:
    from lada.cli import main

    faults = ", ".join(f"{{client: {k}, round: 1, task: local_train}}" for k in range(3))
    argv = ["run", "--out", str(tmp_path / "r"), *tiny_overrides, "rounds=1", "eval.initial=false"]
    assert main([*argv, f"faults=[{faults}]"]) == 1
    out = capsys.readouterr().out
    assert "every client missed round(s) 1" in out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["rounds_every_client_missed"] == [1]
    log = (tmp_path / "r" / "log.txt").read_text()
    assert "round 1" in log and "every client missed" in log  # log.txt has what was printed


def test_eval_and_train_check_the_model_before_loading(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    row = {"id": "a", "domain": "d", "question": "q", "answer": "1", "answer_type": "number"}
    data.write_text(json.dumps(row) + "\n")
    for cmd in (["eval"], ["train", "--out", "m"]):
        res = lada(*cmd, "--model", "slm-xxs", "--data", str(data), cwd=tmp_path)
        assert res.returncode != 0
        assert "option '--model' = 'slm-xxs'" in res.stderr and "'slm-xs'" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()
