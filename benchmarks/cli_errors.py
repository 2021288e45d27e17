"""How fast `lada` reports a config mistake, against the import it no longer waits for.

    python benchmarks/cli_errors.py              # 3 repetitions of each mistake
    python benchmarks/cli_errors.py --reps 5

Each mistake (a bad value, an unknown model, key, host or engine, a host setting, a data key
the data kind does not read, a CSV or empty data file, `lada train lr=-1`, ...) is run as a user
would (a fresh process running `lada.cli.main`, offline, in an empty folder); the wall time to
the error is compared with a peer measured in the same run: a fresh process that only imports
torch and transformers (what every error cost when the checks needed them). Prints the median
seconds, the ratio to the peer, the exit code, whether torch/transformers/Flower were imported,
and whether a run directory was left behind. Target: every mistake < 1 s, rc != 0, nothing
heavy imported, no run directory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = ["run", "--out", "r"]
FILES = ["data.kind=files", "data.public_file=ok.jsonl"]
MISTAKES = [
    [*RUN, "clients.0.model=slm-xxs"],
    [*RUN, "local.optim.lr=-1e-3"],
    [*RUN, "filter.budget=0"],
    [*RUN, "rounds=-3"],
    [*RUN, "eval.limit=-1"],
    [*RUN, "distill.beta=-5"],
    [*RUN, "local.optim.batch_size=0"],
    [*RUN, "clients.5.model=slm-s"],
    [*RUN, "server.model=Org/not-cached-model"],
    [*RUN, "host=fedcott"],
    [*RUN, "engine=flower"],
    [*RUN, "host=fedcollm"],
    [*RUN, "hosts.fedmkt.top_k=0"],
    [*RUN, "clients.0.train_file=nope.jsonl"],
    [*RUN, *FILES, "clients=[{model: slm-s, train_file: t.csv, test_file: ok.jsonl}]"],
    [*RUN, *FILES, "clients=[{model: slm-s, train_file: ok.jsonl, test_file: empty.jsonl}]"],
    ["train", "--model", "slm-s", "--data", "ok.jsonl", "--out", "r", "lr=-1"],
    ["eval", "--model", "slm-s", "--data", "t.csv"],
]
PROBE = """
import json, sys
from lada.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "heavy": [m for m in ("torch", "transformers", "flwr") if m in sys.modules]}))
"""


def _files(cwd: Path) -> None:
    (cwd / "t.csv").write_text("question,answer\nWhat is 2+2?,4\n")
    (cwd / "empty.jsonl").write_text("")
    row = {"id": "a", "domain": "d", "question": "q", "answer": "1", "answer_type": "number"}
    (cwd / "ok.jsonl").write_text(json.dumps(row) + "\n")


def timed(cmd: list[str], cwd: Path) -> tuple[float, int, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    try:
        report = json.loads(res.stdout.strip().splitlines()[-1])
        return seconds, int(report["rc"]), list(report["heavy"])
    except (IndexError, ValueError, KeyError):
        return seconds, res.returncode, ["?"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        _files(cwd)
        peer = statistics.median(
            timed([sys.executable, "-c", "import torch, transformers"], cwd)[0]
            for _ in range(args.reps)
        )
        print(f"peer: import torch, transformers in a fresh process: {peer:.2f} s")
        print(f"{'mistake':58s} {'median s':>9s} {'/ peer':>7s} {'rc':>3s}  heavy  run dir left")
        worst = 0.0
        for mistake in MISTAKES:
            times, rcs, heavy = [], set(), set()
            for _ in range(args.reps):
                s, rc, imported = timed([sys.executable, "-c", PROBE, *mistake], cwd)
                times.append(s)
                rcs.add(rc)
                heavy.update(imported)
            med = statistics.median(times)
            worst = max(worst, med)
            left = (cwd / "r").exists()
            name = " ".join(mistake)
            name = name if len(name) <= 58 else name[:55] + "..."
            print(
                f"{name:58s} {med:9.2f} {med / peer:7.2f} {','.join(map(str, rcs)):>3s}  "
                f"{','.join(sorted(heavy)) or '-':5s}  {left}"
            )
        print(f"slowest: {worst:.2f} s ({'under' if worst < 1 else 'OVER'} the 1 s target)")


if __name__ == "__main__":
    main()
