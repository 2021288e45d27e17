"""Many simulated clients on one machine: Flower simulation vs the in-process engine.

    python benchmarks/flower_scale.py                       # 10, 50 and 100 clients, both engines
    python benchmarks/flower_scale.py --clients 10 --rounds 1 --engines flower-sim

For each number of clients and engine it runs the tiny config (the one the tests use; clients
cycle through slm-xs / slm-s / slm-m, each with its own synthetic private data) in a fresh
process and prints, per round, the wall time and the peak memory of the whole process tree (the
run, and for Flower the Ray GCS, raylet and actors), as PSS (shared pages divided among the
processes sharing them) where the kernel reports it, else RSS. Round 0 is the initial
evaluation; for Flower it includes starting Ray and the actors.

Models are prepared once in ``--cache`` (default: a temporary directory) before any timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

from lada.config.presets import TINY as _TINY  # noqa: E402

TINY = [o for o in _TINY if not o.startswith("rounds=")]
SLMS = ["slm-xs", "slm-s", "slm-m"]


# ---- memory of a process tree ----------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(d.name))
    return out


def _tree(pid: int) -> list[int]:
    kids = _children()
    out, todo = [pid], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _mem_kb(pid: int) -> int:
    for name, key in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        try:
            for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1])
        except OSError:
            continue
    return 0


def tree_memory_mb(pid: int) -> float:
    return sum(_mem_kb(p) for p in _tree(pid)) / 1024


class RoundSampler(threading.Thread):
    """Samples the tree's memory; a new line in metrics.jsonl closes the current round."""

    def __init__(self, pid: int, metrics: Path, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.metrics, self.interval = pid, metrics, interval
        self.peaks: list[float] = []  # per completed round
        self._peak = 0.0
        self._halt = threading.Event()

    def _lines(self) -> int:
        try:
            return sum(1 for line in self.metrics.read_text().splitlines() if line.strip())
        except OSError:
            return 0

    def run(self) -> None:
        while not self._halt.is_set():
            self._peak = max(self._peak, tree_memory_mb(self.pid))
            while self._lines() > len(self.peaks):
                self.peaks.append(self._peak)
                self._peak = tree_memory_mb(self.pid)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


# ---- one run in a child process --------------------------------------------------------------


def overrides(n: int, rounds: int, engine: str, ray_cpus: int | None) -> list[str]:
    over = [*TINY, f"rounds={rounds}", f"engine={engine}", f"data.split.num_clients={n}"]
    over += [f"clients.{k}.model={SLMS[k % len(SLMS)]}" for k in range(n)]
    if ray_cpus is not None:
        over.append(f"flower.ray_num_cpus={ray_cpus}")
    return over


def child(args: argparse.Namespace) -> None:
    """Run one configuration (in this process) and exit."""
    from lada.config import load_config
    from lada.runner.run import run

    cfg = load_config(None, json.loads(args.child))
    run(cfg, args.run_dir)


def prepare(cache: Path, sizes: list[int]) -> None:
    """Prepare every zoo model (and the splits' worlds) once, untimed."""
    env = dict(os.environ, LADA_CACHE=str(cache))
    for n in sorted(set(sizes)):
        code = (
            "import json,sys\n"
            "from lada.config import load_config\n"
            "from lada.runner.run import prepare_zoo_models\n"
            "from lada.runner.setup import world_config\n"
            "cfg = load_config(None, json.loads(sys.argv[1]))\n"
            "prepare_zoo_models(cfg, world_config(cfg))\n"
        )
        over = json.dumps(overrides(n, 1, "inprocess", None))
        subprocess.run([sys.executable, "-c", code, over], env=env, check=True)


def measure(
    n: int, engine: str, rounds: int, cache: Path, work: Path, ray_cpus: int | None
) -> dict[str, Any]:
    run_dir = work / f"{engine}-{n}"
    env = dict(
        os.environ,
        LADA_CACHE=str(cache),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        FLWR_HOME=str(work / "flwr-home"),
        RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    cmd = [
        sys.executable,
        __file__,
        "--child",
        json.dumps(overrides(n, rounds, engine, ray_cpus)),
        "--run-dir",
        str(run_dir),
    ]
    t0 = time.perf_counter()
    log = (work / f"{engine}-{n}.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    sampler = RoundSampler(proc.pid, run_dir / "metrics.jsonl")
    sampler.start()
    rc = proc.wait()
    sampler.stop()
    wall = time.perf_counter() - t0
    from lada.runner.metrics_file import read_metrics

    records = read_metrics(run_dir)
    return {
        "clients": n,
        "engine": engine,
        "rc": rc,
        "wall_s": wall,
        "rounds": [
            {
                "round": r["round"],
                "seconds": r["seconds"]["total"],
                "peak_mb": sampler.peaks[i] if i < len(sampler.peaks) else float("nan"),
                "missed": len(r["missed"]),
                "bytes": r["bytes"]["up"] + r["bytes"]["down"],
            }
            for i, r in enumerate(records)
        ],
    }


def print_table(results: list[dict[str, Any]]) -> None:
    print()
    head = f"{'clients':>7}  {'engine':<11} {'round':>5}  {'wall s':>8}  {'peak MB':>8}  {'missed':>6}  {'bytes':>10}"
    print(head)
    print("-" * len(head))
    for res in results:
        if res["rc"] != 0:
            print(f"{res['clients']:>7}  {res['engine']:<11} failed (exit {res['rc']})")
        for r in res["rounds"]:
            print(
                f"{res['clients']:>7}  {res['engine']:<11} {r['round']:>5}  {r['seconds']:>8.1f}"
                f"  {r['peak_mb']:>8.0f}  {r['missed']:>6}  {r['bytes']:>10}"
            )
        print(
            f"{res['clients']:>7}  {res['engine']:<11} {'all':>5}  {res['wall_s']:>8.1f}  (process wall time, imports included)"
        )
    print()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("--engines", nargs="+", default=["inprocess", "flower-sim"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--ray-cpus", type=int, default=None, help="flower.ray_num_cpus (default 2)")
    p.add_argument("--cache", type=Path, default=None, help="LADA_CACHE (default: temporary)")
    p.add_argument("--out", type=Path, default=None, help="keep run dirs and a results.json here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="lada-flower-scale-") as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        cache = args.cache or work / "cache"
        print(f"preparing models in {cache} ...", flush=True)
        prepare(cache, args.clients)
        results = []
        for n in args.clients:
            for engine in args.engines:
                print(f"{n} clients, {engine} ...", flush=True)
                results.append(measure(n, engine, args.rounds, cache, work, args.ray_cpus))
                print_table(results[-1:])
        print_table(results)
        (work / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
