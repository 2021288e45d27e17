"""Real-model speed: LaDa's training and generation vs Hugging Face on SmolLM2-135M-Instruct.

One run, same machine, same moment (so load on a shared CPU hits both sides alike):

* training: LaDa's ``sft`` loop (LoRA, ``dtype`` auto: bf16 autocast where the CPU/GPU has
  native bf16) vs ``transformers.Trainer`` + peft on the same data, same LoRA, same batch
  size, max length and schedule; the Trainer is timed in fp32 and with ``bf16=True`` and its
  faster run is the peer. Non-pad tokens per second, tokenisation excluded, warm-up first;
  the loops run ``--repeats`` times, alternated, and each one's best run counts. Also timed,
  to show their share: ours without training's C kernels (``runtime.accel: torch``: LoRA dropout
  from ``random_`` masks, the MLP as separate cast layers; ``lada.accel.lora_dropout``,
  ``lada.accel.cast_swiglu``).
* generation: LaDa's generator (``lada.eval.generate.generate_paths``: length-sorted batches,
  finished rows dropped, on the lean decoder of ``lada.accel.lean_decoder``: fused
  projections with LoRA folded into a bf16 copy made once per call on a model that autocasts
  to bf16 and packed once for oneDNN (``lada.accel.packed_linear``), preallocated KV cache,
  shared prompt prefix computed once, left padding skipped in the prefill's matmuls, each
  decode step's small ops in fused C kernels, ``lada.accel.decode_kernels``) vs plain greedy ``model.generate`` on the same LoRA-trained model as a user calls it (fp32
  weights as loaded, peft adapters, same batches, prompts and ``max_new_tokens``; its output
  is cut at the answer line like ours). Also printed, to show where the gain comes from:
  ``model.generate`` on the base model without LoRA, and on the LoRA model merged and cast to
  bf16 (``merge_and_unload().to(torch.bfloat16)``, what a user could do for bf16 weights),
  the lean decoder without its C kernels (``kernels=False``), on plain
  (unpacked) bf16 weights (``pack=False``; its decode steps run the C kernels too),
  and our decode loop on the model's own forward (``decoder="hf"``).
  Each generator runs ``--repeats`` times, alternated, and its best time counts. Tokens per second counts the tokens of the final paths (the same work for all).
* torch.compile (left out with ``--no-compile``): the Trainer's ``torch_compile``;
  ``model.generate`` with a static KV cache and a compiled forward on the LoRA model merged
  and cast to bf16 (``lada.accel.compiled.compiled_generate_paths``); and LaDa's own training
  and generator under ``runtime.accel: compile`` (``lada.accel.compiled``). Their compile time
  is printed apart (training's warm-up, generation's first full call).
* MFU: our training's achieved matmul FLOP/s (4 x linear-layer params x tokens: forward plus
  the activation-gradient backward; LoRA has no weight-gradient matmuls for frozen weights;
  attention scores left out) over the best matmul FLOP/s measured in this run (``torch.mm``
  of 2048^2 in fp32 and bf16; the dtype our run computes in).

    python benchmarks/real_model_speed.py [--train-steps 8] [--prompts 16] [--new-tokens 64]
        [--repeats 2]

The last line reads ``train_ratio=X generate_ratio=Y mfu=Z``.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import sys
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("LADA_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402
from train_throughput import run_hf, word_problem  # noqa: E402

from lada.accel import generator, using  # noqa: E402
from lada.accel.compiled import compiled_generate_paths  # noqa: E402
from lada.accel.precision import autocast_dtype  # noqa: E402
from lada.eval.generate import _cut_after_answer, generate_paths, hf_generate_paths  # noqa: E402
from lada.models.loading import LoraSettings, load_causal_lm  # noqa: E402
from lada.provision.fetch import fetch_model  # noqa: E402
from lada.train.loop import OptimConfig  # noqa: E402
from lada.train.sft import sft  # noqa: E402


def load_avg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def hardware() -> str:
    """The CPU's model name, core count and bf16/AMX/AVX flags (and the GPU where there is one)."""
    from lada.accel.runtime import cpu_summary

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return cpu_summary() + gpu


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best FLOP/s of an n x n matmul in ``dtype`` on ``device`` (after one warm-up)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = 0.0
    for i in range(reps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def linear_params(model: torch.nn.Module) -> int:
    """Parameters inside nn.Linear layers (the matmuls), each counted once (tied head too)."""
    seen = {}
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            seen[id(m.weight)] = m.weight.numel()
    return sum(seen.values())


COMPILED_TRAINER = "HF Trainer + peft, torch.compile"
COMPILED_GENERATE = "model.generate, static cache + torch.compile"
OURS_COMPILED_TRAIN = "lada sft, runtime.accel compile"
OURS_COMPILED_GENERATE = "lada generator, runtime.accel compile"


def compiled_generator_paths(
    model, tokenizer, prompts, *, max_new_tokens: int, batch_size: int
) -> list[str]:
    """LaDa's generator under ``runtime.accel: compile`` (``lada.accel.compiled``: LoRA merged
    for the call, static KV cache, compiled forward)."""
    with using(accel="compile"):
        return generator(model, tokenizer).paths(
            prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="a real model name (lada models fetch)")
    p.add_argument("--train-steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2, help="best of N timed runs, alternated")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    p.add_argument(
        "--no-compile-train",
        action="store_true",
        help="leave out the torch.compile training rows only (each compiles for minutes on a CPU)",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    path = fetch_model(args.model)
    lora = LoraSettings()
    rng = random.Random(0)
    pairs = [word_problem(rng) for _ in range(args.batch_size * (args.train_steps + 2))]
    prompts, targets = [a for a, _ in pairs], [b for _, b in pairs]
    cfg = OptimConfig(
        lr=1e-4,
        batch_size=args.batch_size,
        max_steps=args.train_steps,
        max_length=args.max_length,
        warmup_steps=2,
    )
    warm = OptimConfig(**{**cfg.__dict__, "max_steps": 2})
    print(
        f"{args.model} ({path}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {load_avg()} at start"
    )
    print(f"hardware: {hardware()}")

    # ---- training -------------------------------------------------------------------------
    ours, tok = load_causal_lm(path, lora=lora, dtype="auto", device=args.device)
    device = next(ours.parameters()).device
    autocast = autocast_dtype(ours)
    weights = next(ours.parameters()).dtype
    compute = autocast or weights
    print(f"ours: weights {weights}, autocast {autocast}, device {device}")
    n_linear = linear_params(ours.get_base_model())
    hf_modes = [False] + ([True] if compute == torch.bfloat16 else [])
    # bf16 None: ours; "no-kernels": ours with runtime.accel torch (training's C kernels off:
    # LoRA dropout from random_ masks, the MLP as separate cast layers), to show their share;
    # "accel-compile": ours with runtime.accel compile (the model's forward in torch.compile)
    trainers = {
        "lada sft (LoRA, auto)": (ours, None),
        "lada sft without C kernels": (ours, "no-kernels"),
    }
    for bf16 in hf_modes:
        hf, _ = load_causal_lm(
            path, lora=lora, dtype="fp32", device=args.device, chat_template="auto"
        )
        trainers[f"HF Trainer + peft ({'bf16' if bf16 else 'fp32'})"] = (hf.train(), bf16)
    # the contender: the Trainer's torch_compile (inductor) in the faster precision of the two
    if not (args.no_compile or args.no_compile_train):
        hf, _ = load_causal_lm(
            path, lora=lora, dtype="fp32", device=args.device, chat_template="auto"
        )
        trainers[COMPILED_TRAINER] = (hf.train(), ("compile", hf_modes[-1]))
        trainers[OURS_COMPILED_TRAIN] = (ours, "accel-compile")

    def train_once(model, bf16: bool | str | None, optim: OptimConfig) -> tuple[float, int]:
        if bf16 is None or bf16 in ("no-kernels", "accel-compile"):
            accel = {None: "native", "no-kernels": "torch", "accel-compile": "compile"}[bf16]
            with using(accel=accel):
                stats = sft(model, tok, prompts, targets, optim)
            return stats.seconds, stats.tokens
        if isinstance(bf16, tuple):  # ("compile", bf16)
            return run_hf(
                model,
                tok,
                prompts,
                targets,
                optim,
                group_by_length=False,
                bf16=bf16[1],
                compile=True,
            )
        return run_hf(model, tok, prompts, targets, optim, group_by_length=False, bf16=bf16)

    first: dict[str, float] = {}  # the warm-up's seconds: torch.compile's compile time is here
    for name, (model, bf16) in trainers.items():
        t0 = time.perf_counter()
        train_once(model, bf16, warm)  # warm-up
        first[name] = time.perf_counter() - t0
        print(f"  (warm-up {name}: {first[name]:.1f}s)", flush=True)
    results: dict[str, tuple[float, int]] = {}
    for _ in range(args.repeats):  # alternated, best of --repeats each (load hits all alike)
        for name, (model, bf16) in trainers.items():
            seconds, tokens = train_once(model, bf16, cfg)
            print(f"  (train {name}: {tokens} tok in {seconds:.2f}s)", flush=True)  # as it goes
            if name not in results or tokens / seconds > results[name][1] / results[name][0]:
                results[name] = (seconds, tokens)
    del trainers
    for name, (seconds, tokens) in results.items():
        print(
            f"train  {name:32s} {tokens:7d} tok in {seconds:7.2f}s = {tokens / seconds:8.1f} tok/s"
        )
    for name, seconds in first.items():
        print(
            f"train  {name:32s} warm-up ({warm.max_steps} steps, compile included) {seconds:7.2f}s"
        )
    hf_best = max(
        t / s for name, (s, t) in results.items() if name.startswith("HF") and "compile" not in name
    )
    seconds, tokens = results["lada sft without C kernels"]
    print(f"train  ratio without our C kernels: {tokens / seconds / hf_best:.2f}")
    seconds, tokens = results["lada sft (LoRA, auto)"]
    train_rate = tokens / seconds
    train_ratio = train_rate / hf_best
    if COMPILED_TRAINER in results:
        s_c, t_c = results[COMPILED_TRAINER]
        no_k = results["lada sft without C kernels"]
        print(
            f"train  ratios vs torch.compile (steady state, compile excluded): ours "
            f"{train_rate / (t_c / s_c):.2f}, ours without C kernels "
            f"{no_k[1] / no_k[0] / (t_c / s_c):.2f}; compile's warm-up "
            f"{first[COMPILED_TRAINER]:.1f}s vs ours {first['lada sft (LoRA, auto)']:.1f}s"
        )
    if OURS_COMPILED_TRAIN in results:
        s_c, t_c = results[OURS_COMPILED_TRAIN]
        print(
            f"train  ratio ours vs ours with runtime.accel compile (steady state): "
            f"{train_rate / (t_c / s_c):.2f}; its warm-up {first[OURS_COMPILED_TRAIN]:.1f}s"
        )

    # ---- generation -----------------------------------------------------------------------
    # the model LaDa generates with: the LoRA-trained one from above (a peft model)
    gen_prompts = [word_problem(rng)[0] for _ in range(args.prompts)]
    bs = args.prompts
    ours.eval()

    def ntok(texts: list[str]) -> int:
        return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)

    plain, _ = load_causal_lm(path, dtype="fp32", device=args.device)  # no LoRA at all
    half = copy.deepcopy(ours).merge_and_unload().to(torch.bfloat16)  # the peer in bf16
    runs = {  # name -> (model, generate function)
        "lada generate_paths, LoRA model": (ours, generate_paths),
        "lada, lean decoder without C kernels": (ours, partial(generate_paths, kernels=False)),
        "lada, lean decoder on plain bf16 weights": (ours, partial(generate_paths, pack=False)),
        "lada, model's own forward (decoder=hf)": (ours, partial(generate_paths, decoder="hf")),
        "model.generate, same LoRA model": (ours, hf_generate_paths),
        "model.generate, base without LoRA": (plain, hf_generate_paths),
        "model.generate, merged LoRA in bf16": (half, hf_generate_paths),
    }
    if not args.no_compile:  # the contender: static KV cache + torch.compile'd forward
        runs[COMPILED_GENERATE] = (half, compiled_generate_paths)
        runs[OURS_COMPILED_GENERATE] = (ours, compiled_generator_paths)
    texts: dict[str, list[str]] = {}
    best: dict[str, float] = {}
    for model, fn in runs.values():
        fn(model, tok, gen_prompts[:2], max_new_tokens=4, batch_size=bs)  # warm-up
    compile_first: dict[str, float] = {}
    for name in (COMPILED_GENERATE, OURS_COMPILED_GENERATE):
        if name in runs:  # the first full call compiles for these shapes: timed apart
            model, fn = runs[name]
            t0 = time.perf_counter()
            fn(model, tok, gen_prompts, max_new_tokens=args.new_tokens, batch_size=bs)
            compile_first[name] = time.perf_counter() - t0
    for _ in range(args.repeats):  # alternated, best of --repeats each (load hits all alike)
        for name, (model, fn) in runs.items():
            t0 = time.perf_counter()
            out = fn(model, tok, gen_prompts, max_new_tokens=args.new_tokens, batch_size=bs)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
            print(f"  (generate {name}: {time.perf_counter() - t0:.2f}s)", flush=True)
            texts[name] = [_cut_after_answer(t) for t in out]
    rate = {name: ntok(texts[name]) / best[name] for name in runs}
    for name in runs:
        print(
            f"generate  {name:40s} {ntok(texts[name]):6d} tok in {best[name]:7.2f}s "
            f"= {rate[name]:7.1f} tok/s"
        )
    mine, ref = texts["lada generate_paths, LoRA model"], texts["model.generate, same LoRA model"]
    gen_ours, gen_hf = (
        rate["lada generate_paths, LoRA model"],
        rate["model.generate, same LoRA model"],
    )
    same = sum(a == b for a, b in zip(mine, ref, strict=True))
    print(f"generate  identical paths (ours vs same-model generate): {same}/{len(ref)}")
    torch_ops = texts["lada, lean decoder without C kernels"]
    same = sum(a == b for a, b in zip(mine, torch_ops, strict=True))
    print(f"generate  identical paths (ours vs ours without C kernels): {same}/{len(ref)}")
    if COMPILED_GENERATE in runs:
        c_rate = rate[COMPILED_GENERATE]
        print(
            f"generate  ratios vs torch.compile + static cache (steady state): ours "
            f"{gen_ours / c_rate:.2f}, ours without C kernels "
            f"{rate['lada, lean decoder without C kernels'] / c_rate:.2f}; its first call "
            f"(compile included) {compile_first[COMPILED_GENERATE]:.1f}s vs steady "
            f"{best[COMPILED_GENERATE]:.1f}s"
        )
        o_rate = rate[OURS_COMPILED_GENERATE]
        print(
            f"generate  ratio ours vs ours with runtime.accel compile (steady state): "
            f"{gen_ours / o_rate:.2f}; its first call (compile included) "
            f"{compile_first[OURS_COMPILED_GENERATE]:.1f}s"
        )

    # ---- MFU ------------------------------------------------------------------------------
    peak = {dt: matmul_peak(device, dt) for dt in (torch.float32, torch.bfloat16)}
    achieved = 4 * n_linear * train_rate
    mfu = achieved / peak[compute] if compute in peak else float("nan")
    print(
        f"mfu  {n_linear / 1e6:.1f} M linear params, achieved {achieved / 1e9:.1f} GFLOP/s; "
        f"matmul peak fp32 {peak[torch.float32] / 1e9:.1f}, bf16 {peak[torch.bfloat16] / 1e9:.1f} "
        f"GFLOP/s; load average {load_avg()} at end"
    )
    print(f"train_ratio={train_ratio:.2f} generate_ratio={gen_ours / gen_hf:.2f} mfu={mfu:.3f}")


if __name__ == "__main__":
    main()
