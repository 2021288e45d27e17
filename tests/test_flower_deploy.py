"""End to end on Flower's deployment engine, on 127.0.0.1, everything a separate process:

one ``flower-superlink`` (TLS on, SuperNode authentication on), two ``flower-supernode``s
(each authenticated with its own key, ``--node-config`` naming its client, config, data and state
dir), the LaDa app submitted with ``flwr run``. Certificates and keys come from
``scripts/make_dev_certs.sh``.

1. a clean 2-round run: the run directory is written as by ``lada run`` and the metrics are
   complete;
2. a SuperNode killed (SIGKILL) mid-round: the round completes with the other client, the
   summary reports the missing one, and the restarted SuperNode rejoins at the next round.

Every process started here is stopped by its PID (with the processes it spawned) in a finally
block. Telemetry, update checks and runtime dependency installation are off; ``FLWR_HOME`` is
temporary. Slow: each Flower message starts a fresh ClientApp process (minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("flwr")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
APP = REPO / "flower-app"
N_NODES = 2
RUN_TIMEOUT_S = 1500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """All processes below ``pid`` (Linux /proc), children first."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _stop(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """Stop ``proc`` and everything it spawned, each by its PID."""
    pids = [*_descendants(proc.pid), proc.pid]
    for pid in [proc.pid, *pids[:-1]]:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.wait(timeout=timeout)


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]
    certs: Path
    keys: Path
    address: str
    config: Path
    split: Path
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    nodes: dict[int, subprocess.Popen[Any]] = field(default_factory=dict)
    node_ids: list[int] = field(default_factory=list)  # client k's SuperNode id

    def spawn(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> Any:
        f = log.open("ab")
        p = subprocess.Popen(
            args, env=env or self.env, stdout=f, stderr=subprocess.STDOUT, cwd=self.root
        )
        self.procs.append(p)
        return p

    def flwr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "flwr"), *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_supernode(self, k: int, state_dir: Path) -> subprocess.Popen[Any]:
        env = dict(self.env, FLWR_HOME=str(self.root / f"node{k}-home"))
        node_config = (
            f'client-id={k} config="{self.config}" state-dir="{state_dir}" data-dir="{self.split}"'
        )
        p = self.spawn(
            [
                str(BIN / "flower-supernode"),
                "--superlink", self.address,
                "--root-certificates", str(self.certs / "ca.crt"),
                "--auth-supernode-private-key", str(self.keys / f"supernode_{k}"),
                "--port", str(_free_port()),
                "--node-config", node_config,
                "--max-retries", "50",
            ],
            self.root / f"supernode{k}.log",
            env,
        )  # fmt: skip
        self.nodes[k] = p
        return p

    def submit(self, run_dir: Path, extra: str = "") -> subprocess.CompletedProcess[str]:
        run_config = f'config="{self.config}" run-dir="{run_dir}"'
        if extra:
            run_config += f' overrides="{extra}"'
        return self.flwr(
            "run", str(APP), "lada-test", "--run-config", run_config, "--stream",
            timeout=RUN_TIMEOUT_S,
        )  # fmt: skip


def _wait_for(pred: Any, timeout: float, what: str, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, lada_cache: str) -> Iterator[Cluster]:
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import TINY

    from lada.config import load_config, to_dict
    from lada.data.split import make_split
    from lada.runner.run import prepare_zoo_models
    from lada.runner.setup import load_run_data, split_settings

    root = tmp_path_factory.mktemp("flower-deploy")
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # flower-superexec, flwr-serverapp, ...
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        FLWR_HOME=str(root / "cli-home"),
        LADA_CACHE=lada_cache,
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )

    # certificates and SuperNode keys, as the guide makes them
    subprocess.run(
        ["bash", str(REPO / "scripts" / "make_dev_certs.sh"), str(root / "creds"), str(N_NODES)],
        check=True,
        capture_output=True,
    )
    certs, keys = root / "creds" / "certificates", root / "creds" / "keys"

    # the run config (2 clients), its data split and its models, prepared once
    data = to_dict(load_config(None, TINY))
    data["clients"] = data["clients"][:N_NODES]
    data["data"]["split"]["num_clients"] = N_NODES
    data["data"]["dir"] = str(root / "split")
    data["eval"]["initial"] = False
    data["flower"].update(pull_interval_s=0.5, wait_for_clients_s=300.0)
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_config(config)
    make_split(root / "split", seed=cfg.seed, **split_settings(cfg))
    prepare_zoo_models(cfg, load_run_data(cfg, root).world_cfg)

    port = _free_port()
    c = Cluster(root, env, certs, keys, f"127.0.0.1:{port}", config, root / "split")
    (root / "cli-home").mkdir()
    (root / "cli-home" / "config.toml").write_text(
        "[superlink]\n"
        'default = "lada-test"\n\n'
        "[superlink.lada-test]\n"
        f'address = "127.0.0.1:{port}"\n'
        f'root-certificates = "{certs / "ca.crt"}"\n'
    )
    try:
        c.spawn(
            [
                str(BIN / "flower-superlink"),
                "--ssl-ca-certfile", str(certs / "ca.crt"),
                "--ssl-certfile", str(certs / "server.pem"),
                "--ssl-keyfile", str(certs / "server.key"),
                "--enable-supernode-auth",
                "--disable-runtime-dependency-installation",
                "--host", "127.0.0.1",
                "--port", str(port),
                "--database", str(root / "superlink.db"),
            ],
            root / "superlink.log",
        )  # fmt: skip
        _wait_for(
            lambda: c.flwr("supernode", "list", "lada-test", timeout=30).returncode == 0,
            90,
            "the SuperLink",
            interval=2.0,
        )
        for k in range(N_NODES):
            reg = c.flwr(
                "supernode", "register", str(keys / f"supernode_{k}.pub"), "lada-test",
                "--format", "json",
            )  # fmt: skip
            assert reg.returncode == 0, reg.stdout + reg.stderr
            c.node_ids.append(int(json.loads(reg.stdout)["node-id"]))
        # each client bound to the node its key was registered as (the guide's 2.5)
        data["flower"]["client_nodes"] = c.node_ids
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        for k in range(N_NODES):
            c.start_supernode(k, root / f"state{k}")
        _wait_for(
            lambda: c.flwr("supernode", "list", "lada-test").stdout.count("online") >= N_NODES,
            120,
            "the SuperNodes to be online",
            interval=2.0,
        )
        yield c
    finally:
        for p in reversed(c.procs):
            _stop(p)
        shutil.rmtree(root / "cli-home" / "apps", ignore_errors=True)


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    p = run_dir / "metrics.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _logs(c: Cluster) -> str:
    return "\n".join(
        f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in c.root.glob("*.log")
    )


def test_deployment_two_rounds(cluster: Cluster) -> None:
    run_dir = cluster.root / "run-clean"
    res = cluster.submit(run_dir)
    records = _metrics(run_dir)
    assert [r["round"] for r in records] == [1, 2], res.stdout[-3000:] + _logs(cluster)
    for r in records:
        assert r["missed"] == {}, r["missed"]
        assert set(r["slm_accuracy"]) == {"0", "1"}
        assert set(r["llm_accuracy"]) == {"0", "1"}
        assert r["selected"] and all(v["S"] > 0 for v in r["selected"].values())
        assert r["bytes"]["up"] > 0 and r["bytes"]["down"] > 0
        assert set(r["bytes"]["by_task"]) == {
            "local_train",
            "embed",
            "generate",
            "distill",
            "evaluate",
        }
    # the same kind of run directory as `lada run` (client state lives with each SuperNode)
    for name in ("config.yaml", "metrics.jsonl", "state.json", "summary.json"):
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "state.json").read_text())["last_complete_round"] == 2
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert recorded["flower"]["client_nodes"] == cluster.node_ids  # the binding was in force
    assert (run_dir / "checkpoints" / "round_002").is_dir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["completed_rounds"] == 2 and summary["missed"] == {}
    for k in range(N_NODES):
        saved = sorted(p.name for p in (cluster.root / f"state{k}").glob("round_*.safetensors"))
        assert saved[-2:] == ["round_001.safetensors", "round_002.safetensors"], saved


def test_supernode_killed_mid_round_then_rejoins(cluster: Cluster) -> None:
    run_dir = cluster.root / "run-fault"
    victim = 1
    log = cluster.root / f"supernode{victim}.log"
    mark = len(log.read_bytes())

    result: dict[str, Any] = {}

    def submit() -> None:
        result["res"] = cluster.submit(run_dir, "flower.rejoin_wait_s=300")

    t = threading.Thread(target=submit)
    t.start()
    try:
        # kill the victim's SuperNode once it works on round 1 (its embed task)
        _wait_for(
            lambda: b"Receiving: query.embed" in log.read_bytes()[mark:],
            RUN_TIMEOUT_S,
            "round 1's embed at the victim",
        )
        node = cluster.nodes[victim]
        for pid in [node.pid, *_descendants(node.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.wait(timeout=30)
        # round 1 completes without it ...
        _wait_for(lambda: len(_metrics(run_dir)) >= 1, RUN_TIMEOUT_S, "round 1", interval=2.0)
        # ... then it comes back (same key, same state dir) and joins round 2
        cluster.start_supernode(victim, cluster.root / f"state{victim}")
    finally:
        t.join(timeout=RUN_TIMEOUT_S)
    records = _metrics(run_dir)
    assert [r["round"] for r in records] == [1, 2], _logs(cluster)
    r1, r2 = records
    assert set(r1["missed"]) == {str(victim)}, r1["missed"]
    assert "unreachable" in r1["missed"][str(victim)] or "timeout" in r1["missed"][str(victim)]
    assert "0" in r1["slm_accuracy"] and str(victim) not in r1["slm_accuracy"]
    assert r2["missed"] == {}, r2["missed"]
    assert set(r2["slm_accuracy"]) == {"0", "1"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [m["round"] for m in summary["missed"][str(victim)]] == [1]
