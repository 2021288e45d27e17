"""How fast `lada run` reports a config mistake, against the import it no longer waits for.

    python benchmarks/cli_errors.py              # 3 repetitions of each mistake
    python benchmarks/cli_errors.py --reps 5

Each common config mistake is run as a user would (a fresh `python -m lada.cli run …` process,
offline, in an empty folder); the wall time to the error is compared with a peer measured in
the same run: a fresh process that only imports torch and transformers (what every error cost
before the CLI checked configs first). Prints the median seconds, the ratio to the peer, the
exit code, and whether a run directory was left behind. Target: every mistake < 1 s, rc != 0,
no run directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MISTAKES = [
    ["clients.0.model=slm-xxs"],
    ["local.optim.lr=-1e-3"],
    ["filter.budget=0"],
    ["rounds=-3"],
    ["eval.limit=-1"],
    ["distill.beta=-5"],
    ["local.optim.batch_size=0"],
    ["clients.5.model=slm-s"],
    ["server.model=Org/not-cached-model"],
]


def timed(cmd: list[str], cwd: Path) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True).returncode
    return time.perf_counter() - t0, rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        peer = statistics.median(
            timed([sys.executable, "-c", "import torch, transformers"], cwd)[0]
            for _ in range(args.reps)
        )
        print(f"peer: import torch, transformers in a fresh process: {peer:.2f} s")
        print(f"{'mistake':40s} {'median s':>9s} {'/ peer':>7s} {'rc':>3s}  run dir left")
        worst = 0.0
        for over in MISTAKES:
            times, rcs = [], set()
            for _ in range(args.reps):
                s, rc = timed([sys.executable, "-m", "lada.cli", "run", "--out", "r", *over], cwd)
                times.append(s)
                rcs.add(rc)
            med = statistics.median(times)
            worst = max(worst, med)
            left = (cwd / "r").exists()
            print(
                f"{' '.join(over):40s} {med:9.2f} {med / peer:7.2f} {','.join(map(str, rcs)):>3s}  {left}"
            )
        print(f"slowest: {worst:.2f} s ({'under' if worst < 1 else 'OVER'} the 1 s target)")


if __name__ == "__main__":
    main()
