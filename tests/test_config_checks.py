"""Every config mistake is caught before anything heavy loads: one line per problem naming the
key, a non-zero exit, no run directory, and no torch, transformers or Flower imported (the
real measure of "fast"; the wall time is asserted with headroom for a loaded machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# runs `lada` in-process in a fresh interpreter, then reports what the check imported
PROBE = """
import json, sys
from lada.cli import main
rc = main(sys.argv[1:])
heavy = [m for m in ("torch", "transformers", "flwr", "peft") if m in sys.modules]
print(json.dumps({"rc": rc, "heavy": heavy}))
"""


def lada(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cwd / "no-hub-cache"),
    }
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )
    return res, time.perf_counter() - t0


def _files(cwd: Path) -> None:
    (cwd / "train.csv").write_text("question,answer\nWhat is 2+2?,4\n")
    (cwd / "empty.jsonl").write_text("\n\n")
    row = {"id": "a", "domain": "d", "question": "q", "answer": "1", "answer_type": "number"}
    (cwd / "ok.jsonl").write_text(json.dumps(row) + "\n")
    (cwd / "gsm.jsonl").write_text(json.dumps({"question": "q", "answer": "no final line"}) + "\n")


FILES = ["data.kind=files", "data.public_file=ok.jsonl", "clients=[{model: slm-s}]"]
CLIENT = "clients.0.{}={}"

# (what kind of mistake, `lada` arguments, texts the error must contain)
MISTAKES = [
    ("unknown model", ["run", "--out", "r", "clients.0.model=slm-xxs"], ["clients.0.model"]),
    ("bad value", ["run", "--out", "r", "local.optim.lr=-1"], ["local.optim.lr", "> 0"]),
    ("unknown key", ["run", "--out", "r", "filter.budgt=3"], ["did you mean 'filter.budget'"]),
    ("wrong type", ["run", "--out", "r", "rounds=abc"], ["expected an integer"]),
    ("list index", ["run", "--out", "r", "clients.5.model=slm-s"], ["index up to 3"]),
    ("unknown host", ["run", "--out", "r", "host=fedcott"], ["did you mean 'fedcot'"]),
    ("unknown engine", ["run", "--out", "r", "engine=flower"], ["'engine'", "unknown engine"]),
    ("host setting", ["run", "--out", "r", "hosts.fedmkt.top_k=0"], ["hosts.fedmkt.top_k"]),
    ("old host key", ["run", "--out", "r", "distill.fedcot_alpha=2"], ["hosts.fedcot.alpha"]),
    ("host vs models", ["run", "--out", "r", "host=fedcollm"], ["homogeneous SLMs"]),
    ("host vs transfer", ["run", "--out", "r", "host_transfer=all"], ["logit hosts"]),
    (
        "ignored data key",
        ["run", "--out", "r", "clients.0.train_file=nope.jsonl"],
        ["clients.0.train_file", "data.kind=synthetic does not read it"],
    ),
    (
        "csv as data file",
        ["run", "--out", "r", *FILES, CLIENT.format("train_file", "train.csv"),
         CLIENT.format("test_file", "ok.jsonl")],
        ["clients.0.train_file", "train.csv:1", "JSONL"],
    ),
    (
        "empty data file",
        ["run", "--out", "r", *FILES, CLIENT.format("train_file", "ok.jsonl"),
         CLIENT.format("test_file", "empty.jsonl")],
        ["clients.0.test_file", "no records"],
    ),
    (
        "wrong format",
        ["run", "--out", "r", "data.kind=files", "data.format=gsm8k", "data.public_file=gsm.jsonl",
         "clients=[{model: slm-s, train_file: gsm.jsonl, test_file: gsm.jsonl}]"],
        ["data.public_file", "#### N", "format gsm8k"],
    ),
    (
        "missing data file",
        ["run", "--out", "r", *FILES, CLIENT.format("train_file", "nope.jsonl"),
         CLIENT.format("test_file", "ok.jsonl")],
        ["clients.0.train_file", "no such file"],
    ),
    ("train lr", ["train", "--model", "slm-s", "--data", "ok.jsonl", "--out", "r", "lr=-1"],
     ["override 'lr=-1'", "'lr' = -1.0: must be > 0"]),
    ("train csv", ["train", "--model", "slm-s", "--data", "train.csv", "--out", "r"],
     ["option '--data'", "train.csv:1", "(--format)"]),
    ("eval empty", ["eval", "--model", "slm-s", "--data", "empty.jsonl", "--out", "r"],
     ["option '--data'", "no records"]),
    ("eval model", ["eval", "--model", "slm-xxs", "--data", "ok.jsonl", "--out", "r"],
     ["option '--model'", "'slm-xs'"]),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "args", "needles"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_one_line_at_once_without_torch(
    tmp_path: Path, kind: str, args: list[str], needles: list[str]
) -> None:
    _files(tmp_path)
    res, seconds = lada(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr  # the probe itself ran
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["rc"] == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(errors) == 1 and errors[0].startswith("error: "), res.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    assert report["heavy"] == [], f"{kind}: the check imported {report['heavy']}"
    assert not (tmp_path / "r").exists()
    assert seconds < 3.0, f"{kind}: {seconds:.1f} s"  # < 1 s unloaded; headroom for a busy box


def test_an_old_host_key_is_read_with_one_notice_naming_the_new_key(tmp_path: Path) -> None:
    from lada.config import load_config

    with pytest.warns(UserWarning, match=r"'distill.top_k' is now 'hosts.fedcollm.top_k' and"):
        cfg = load_config(None, ["distill.top_k=16", "distill.fedmkt_lm_weight=0.5"])
    assert cfg.hosts["fedmkt"].top_k == 16 and cfg.hosts["fedcollm"].top_k == 16
    assert cfg.hosts["fedmkt"].lm_weight == 0.5 and not hasattr(cfg.distill, "top_k")
    p = tmp_path / "old.yaml"
    p.write_text("rounds: 2\ndistill:\n  fedcot_alpha: 0.25\n  beta: 0.2\n")
    with pytest.warns(UserWarning, match="'distill.fedcot_alpha' is now 'hosts.fedcot.alpha'"):
        cfg = load_config(p)
    assert cfg.hosts["fedcot"].alpha == 0.25 and cfg.distill.beta == 0.2
    p.write_text("distill:\n  fedcot_alpha: 0.25\nhosts:\n  fedcot: {alpha: 0.75}\n")
    with pytest.warns(UserWarning):
        assert load_config(p).hosts["fedcot"].alpha == 0.75  # the new key, written too, wins
    p.write_text("rounds: 2\ndistill:\n  fedcot_alpha: 7\n")
    with pytest.raises(Exception, match=rf"{p}:3: config key 'hosts.fedcot.alpha' = 7"):
        with pytest.warns(UserWarning):
            load_config(p)


def test_the_cli_prints_the_notice_as_one_line(tmp_path: Path) -> None:
    res, _ = lada("run", "--out", "r", "distill.top_k=0", cwd=tmp_path)
    lines = res.stderr.strip().splitlines()
    assert lines[0] == (
        "warning: override 'distill.top_k=0': config key 'distill.top_k' is now "
        "'hosts.fedcollm.top_k' and 'hosts.fedmkt.top_k'; read as such (rename it)"
    )
    assert lines[1].startswith("error: override 'distill.top_k=0': config key 'hosts.")


def test_host_sections_and_their_errors() -> None:
    from lada.config import ConfigError, load_config
    from lada.hosts.fedcot_config import FedCoTConfig

    cfg = load_config(None, ["host=fedcot", "hosts.fedcot.alpha=0.2"])
    assert cfg.hosts["fedcot"] == FedCoTConfig(alpha=0.2)
    assert set(cfg.hosts) == {"fedcot", "fedcollm", "fedmkt"}  # sft has no settings
    with pytest.raises(
        ConfigError, match=r"'hosts.fedmk' = .*unknown host; did you mean 'hosts.fedmkt'"
    ):
        load_config(None, ["hosts.fedmk.top_k=3"])
    with pytest.raises(ConfigError, match="host sft has no settings"):
        load_config(None, ["hosts.sft.x=1"])
    with pytest.raises(ConfigError, match=r"'hosts.fedcot.beta' = 1: unknown key"):
        load_config(None, ["hosts.fedcot.beta=1"])


def test_hosts_get_their_own_settings() -> None:
    from lada.config import load_config
    from lada.runner.roles import run_host

    host = run_host(load_config(None, ["host=fedcot", "hosts.fedcot.alpha=0.2"]))
    assert host.settings.alpha == 0.2
    from lada.hosts import get_host

    assert get_host("fedmkt").settings.top_k == 128  # defaults without a config


def test_a_rule_is_one_line_on_the_dataclass() -> None:
    """A new setting with its rule is one field line; the walker finds it and formats it."""
    from dataclasses import dataclass

    from lada.config import ConfigError, build
    from lada.config.validate import check_fields
    from lada.utils.rules import ge, setting

    @dataclass
    class Toy:
        aggregate_clip: float = setting(1.0, ge(0))

    with pytest.raises(ConfigError, match=r"config key 'hosts.toy.aggregate_clip' = -1.0: must"):
        build(Toy, {"aggregate_clip": -1.0}, "hosts.toy", check=check_fields)


def test_config_imports_no_host_and_no_engine() -> None:
    """lada.config reads plug-ins by name (lada.plugins): it imports no host or engine."""
    import ast

    for path in (SRC / "lada" / "config").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                assert not name.startswith(("lada.hosts", "lada.engines", "lada.federation")), (
                    path.name,
                    name,
                )


def test_plugins_table_agrees_with_the_host_classes() -> None:
    from lada import plugins
    from lada.hosts import host_class

    for name in plugins.BUILTIN_HOSTS:
        cls = host_class(name)
        assert cls.compares_logits == plugins.HOSTS[name].logits, name
        assert cls.settings_class is plugins.host_settings_class(name), name


def test_a_bench_run_recorded_with_old_keys_is_not_stale(tmp_path: Path) -> None:
    import yaml

    from lada.bench.execute import stale_runs
    from lada.bench.suite import paper_suite
    from lada.config import load_config, to_dict

    spec = paper_suite(quick=True)[0][0]
    cfg = to_dict(load_config(None, list(spec.overrides)))
    old = cfg.pop("hosts")
    cfg["distill"].update(
        fedcot_alpha=old["fedcot"]["alpha"],
        top_k=old["fedmkt"]["top_k"],
        fedmkt_lm_weight=old["fedmkt"]["lm_weight"],
        fedmkt_distill_weight=old["fedmkt"]["distill_weight"],
        fedcollm_kl_weight=old["fedcollm"]["kl_weight"],
    )
    (tmp_path / spec.name).mkdir()
    (tmp_path / spec.name / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert stale_runs([spec], tmp_path) == []
    cfg["distill"]["top_k"] = 64
    (tmp_path / spec.name / "config.yaml").write_text(yaml.safe_dump(cfg))
    (stale,) = stale_runs([spec], tmp_path)
    assert "hosts.fedcollm.top_k (64 -> 128)" in stale
