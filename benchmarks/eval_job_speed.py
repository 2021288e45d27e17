"""The real config's evaluation job: today's generator vs the one of an earlier commit.

Loads ``lada.eval.generate`` as it was at ``--before`` (``git show REV:src/lada/eval/generate.py``,
run against today's other modules) and times its ``generate_paths`` against today's, in one
process, alternately, best of ``--repeats`` each, on what ``configs/real-cpu.yaml`` evaluates:
a client's test questions (default: client 0 of a run directory's data), ``eval.max_new_tokens``
new tokens, one batch of ``eval.batch_size``, the config's LoRA (adapters zero as at round 0, or
those of ``--adapters``, a round checkpoint of the run) and chat template, ``dtype: auto``.

    python benchmarks/eval_job_speed.py --run RUN_DIR [--before bca256d] [--model smollm2-135m]

Prints each generator's time, the tokens of its paths, whether the paths are identical, and
the speed-up (before / now).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("LADA_PROGRESS", "0")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402

from lada.config import load_config  # noqa: E402
from lada.data.jsonl import read_jsonl_dicts  # noqa: E402
from lada.data.sample import Sample  # noqa: E402
from lada.eval import generate as now  # noqa: E402
from lada.models.fetch import fetch_model  # noqa: E402
from lada.models.loading import load_causal_lm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def module_at(rev: str) -> types.ModuleType:
    """``lada.eval.generate`` as of git revision ``rev`` (imports resolve to today's lada)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/lada/eval/generate.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType(f"generate_{rev}")
    exec(compile(source, f"{rev}:generate.py", "exec"), module.__dict__)
    return module


def load_adapters(model: torch.nn.Module, path: Path) -> None:
    """Copy a round checkpoint's LoRA tensors into ``model`` (names matched by suffix)."""
    from safetensors.torch import load_file

    saved = load_file(str(path))
    params = dict(model.named_parameters())
    for name, value in saved.items():
        hits = [n for n in params if n.endswith(name) or name.endswith(n)]
        if len(hits) != 1:
            raise KeyError(f"{name}: {len(hits)} matching parameters")
        with torch.no_grad():
            params[hits[0]].copy_(value)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a run directory of the config")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "real-cpu.yaml")
    p.add_argument("--before", default="bca256d", help="the earlier commit's generator")
    p.add_argument("--model", default=None, help="default: the client's model")
    p.add_argument("--client", type=int, default=0)
    p.add_argument("--adapters", type=Path, default=None, help="a round's .safetensors")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = load_config(args.config)
    role = cfg.clients[args.client]
    name = args.model or role.model
    lora = (cfg.server if name == cfg.server.model else role).lora
    model, tok = load_causal_lm(fetch_model(name), lora=lora, dtype="auto", device="cpu")
    if args.adapters is not None:
        load_adapters(model, args.adapters)
    test = args.run / "data" / "clients" / f"client_{args.client}" / "test.jsonl"
    samples = [Sample.from_dict(d) for _, d in read_jsonl_dicts(test)][: cfg.eval.limit]
    prompts = [s.prompt() for s in samples]
    old = module_at(args.before)
    kw = {"max_new_tokens": cfg.eval.max_new_tokens, "batch_size": cfg.eval.batch_size}
    gens = {f"before ({args.before})": old.generate_paths, "now": now.generate_paths}
    best: dict[str, float] = {}
    paths: dict[str, list[str]] = {}
    for fn in gens.values():
        fn(model, tok, prompts[:2], max_new_tokens=4)  # warm-up
    for _ in range(args.repeats):
        for label, fn in gens.items():
            t0 = time.perf_counter()
            paths[label] = fn(model, tok, prompts, **kw)
            best[label] = min(best.get(label, float("inf")), time.perf_counter() - t0)
    load = Path("/proc/loadavg").read_text().split()[0]
    print(
        f"{name}: {len(prompts)} questions of client {args.client}, {kw}, "
        f"{torch.get_num_threads()} threads, load average {load}"
    )
    for label in gens:
        n = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in paths[label])
        print(f"  {label:20s} {best[label]:7.2f} s  {n:5d} tokens")
    a, b = paths.values()
    print(f"  identical paths {sum(x == y for x, y in zip(a, b, strict=True))}/{len(a)}")
    before, after = best.values()
    print(f"speedup={before / after:.2f}")


if __name__ == "__main__":
    sys.exit(main())
