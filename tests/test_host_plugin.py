"""A host is one plug-in: a toy fifth host, defined here alone, runs a round with and without
LaDa through the ordinary `lada run` path (registry, config check, roles, round, report)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lada.config import load_config
from lada.federation.host import Host, RoundContext
from lada.federation.protocol import Payload, register_task, unregister_task
from lada.hosts.registry import host_names, register_host, unregister_host
from lada.runner.run import run

SRC = Path(__file__).resolve().parents[1] / "src" / "lada"
FAST = ["rounds=1", "eval.initial=false", "local.optim.max_steps=2"]


@dataclass
class CountIns(Payload):
    round: int


@dataclass
class CountRes(Payload):
    num_private: int


LOSS_CALLS: list[int] = []  # batches the toy L_host saw (clients run in this process)


class ToyHost(Host):
    """After local training every client reports how many private samples it holds (a task
    of its own); its L_host is twice the plain NLL; otherwise the plain path exchange."""

    name = "toy"

    def check(self, cfg: Any) -> None:
        if len(cfg.clients) < 2:
            from lada.config.overrides import ConfigError

            raise ConfigError("host toy needs two clients")

    def after_local(self, rnd: RoundContext) -> None:
        got = rnd.broadcast("toy_count", {k: CountIns(rnd.round) for k in rnd.alive})
        rnd.host_state = {k: r.num_private for k, r in got.items()}

    def client_handlers(self, role: Any) -> Mapping[str, Any]:
        return {"toy_count": lambda ins: CountRes(num_private=len(role.train))}

    def host_loss(self, cfg: Any, tokenizer: Any, preferred: Sequence[str]) -> Any:
        def loss(b: Any) -> Any:
            LOSS_CALLS.append(len(b.idx))
            w = b.weight
            return 2.0 * (-(w * b.seq).sum() / (w * b.counts).sum().clamp(min=1))

        return loss


@pytest.fixture()
def toy_host() -> Iterator[None]:
    register_host(ToyHost)
    register_task("toy_count", CountIns, CountRes, read_only=True)
    LOSS_CALLS.clear()
    try:
        yield
    finally:
        unregister_host("toy")
        unregister_task("toy_count")


@pytest.mark.parametrize("plugin", ["lada", "none"])
def test_a_fifth_host_defined_here_runs_a_round(
    toy_host: None, tmp_path: Path, tiny_overrides: list[str], plugin: str
) -> None:
    assert "toy" in host_names()
    cfg = load_config(None, tiny_overrides + FAST + ["host=toy", f"plugin={plugin}"])
    rec = run(cfg, tmp_path / "r")[-1]
    assert rec["round"] == 1 and rec["missed"] == {}, rec["missed"]
    by_task = rec["bytes"]["by_task"]
    n = len(rec["slm_accuracy"])
    assert n == len(cfg.clients) and by_task["toy_count"]["up"] > 0  # its own task ran
    assert LOSS_CALLS  # the clients' distillation used its L_host
    assert "generate" in by_task and "distill" in by_task  # the path exchange (its default)
    sizes = rec["selected"]["0"]  # picks per direction
    if plugin == "lada":
        # the filters' picks among the candidates (P has 30; none where nothing is taught)
        masked = rec["masked"]["0"]
        assert all((0 < v < 30) or masked[d] == 30 for d, v in sizes.items())
        for k, r in rec["mean_reward"].items():  # every direction with picks is rewarded
            assert {d for d, n in rec["selected"][k].items() if n} <= set(r)
    else:
        assert sizes == {"S": 30, "L": 30}  # the host alone: all of P, no filter, λ = 0
        assert rec["mean_reward"] == {}
        assert all(v["slm_pairs"] == 0 for v in rec["distill"].values())


def test_the_toy_host_checks_its_config(toy_host: None, tiny_overrides: list[str]) -> None:
    from lada.config.overrides import ConfigError
    from lada.hosts import check_host_config

    one = load_config(None, tiny_overrides + ["host=toy", "clients=[{model: slm-s}]"])
    with pytest.raises(ConfigError, match="host toy needs two clients"):
        check_host_config(one)
    check_host_config(load_config(None, tiny_overrides + ["host=toy"]))


def test_unknown_host_is_a_config_error_before_anything_is_written(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    from lada.config.overrides import ConfigError

    with pytest.raises(ConfigError, match="'host' = 'nope': unknown host"):
        run(load_config(None, tiny_overrides + ["host=nope"]), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_federation_and_runner_name_no_concrete_host_or_engine() -> None:
    """The round knows hosts only through the Host interface, the runner engines only
    through the registry."""
    host_import = re.compile(r"(from|import)\s+lada\.hosts\b")
    for path in sorted((SRC / "federation").glob("*.py")):
        assert not host_import.search(path.read_text()), path
    engine_import = re.compile(r"(from|import)\s+lada\.engines\.")
    for path in sorted((SRC / "runner").glob("*.py")):
        assert not engine_import.search(path.read_text()), path
