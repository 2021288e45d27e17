"""The real config's evaluation job: today's generator vs the one of an earlier commit.

Loads the generator as it was at ``--before``: ``lada.eval.generate`` and, where it existed
then, ``lada.accel.lean_decoder`` (``git show REV:PATH``; the old generator runs with its own
lean decoder in place of today's, against today's other modules), and times its
``generate_paths`` against today's, in one
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
import contextlib
import os
import subprocess
import sys
import time
import types
from collections.abc import Iterator
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
from lada.models.loading import load_causal_lm  # noqa: E402
from lada.provision.fetch import fetch_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


GENERATOR = {  # module -> its file: what --before loads as of the earlier commit
    "lada.eval.generate": "src/lada/eval/generate.py",
    "lada.accel.lean_decoder": "src/lada/accel/lean_decoder.py",
}


def source_at(rev: str, path: str) -> str | None:
    """The text of ``path`` at git revision ``rev``; None if the file did not exist then.
    A ``rev`` that names no commit is an error that says so."""
    verify = ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]
    if subprocess.run(verify, cwd=ROOT, capture_output=True).returncode:
        raise SystemExit(f"--before {rev}: not a commit of this repository")
    spec = f"{rev}:{path}"
    if subprocess.run(["git", "cat-file", "-e", spec], cwd=ROOT, capture_output=True).returncode:
        return None
    return subprocess.run(
        ["git", "show", spec], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


@contextlib.contextmanager
def installed(modules: dict[str, types.ModuleType]) -> Iterator[None]:
    """``modules`` in ``sys.modules`` for the duration (the imports inside the old
    generator's functions then find its own lean decoder); today's restored after."""
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def generator_at(rev: str) -> dict[str, types.ModuleType]:
    """The generator's modules as of ``rev`` (those that existed then), by module name;
    imports between them and of other modules resolve to the old ones, then to today's."""
    modules: dict[str, types.ModuleType] = {}
    for name in reversed(GENERATOR):  # the lean decoder first: the generator imports it
        source = source_at(rev, GENERATOR[name])
        if source is None:
            continue
        module = types.ModuleType(name)
        module.__file__ = f"{rev}:{GENERATOR[name]}"
        with installed({**modules, name: module}):
            exec(compile(source, module.__file__, "exec"), module.__dict__)
        modules[name] = module
    if "lada.eval.generate" not in modules:
        raise SystemExit(f"--before {rev}: no {GENERATOR['lada.eval.generate']} at that revision")
    return modules


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
    old = generator_at(args.before)
    print(f"before ({args.before}): {', '.join(m.__file__ for m in old.values())}")
    kw = {"max_new_tokens": cfg.eval.max_new_tokens, "batch_size": cfg.eval.batch_size}
    gens = {  # label -> (generate_paths, the modules it runs with)
        f"before ({args.before})": (old["lada.eval.generate"].generate_paths, old),
        "now": (now.generate_paths, {}),
    }
    best: dict[str, float] = {}
    paths: dict[str, list[str]] = {}
    for fn, modules in gens.values():
        with installed(modules):
            fn(model, tok, prompts[:2], max_new_tokens=4)  # warm-up
    for _ in range(args.repeats):
        for label, (fn, modules) in gens.items():
            with installed(modules):
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
