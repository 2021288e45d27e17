"""What ran: the CPU's relevant features and the run's speed path, as one record for
``summary.json`` (``runtime``) and one line of ``log.txt``."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

# the CPU features the speed path depends on: bf16 dot products (AVX512-BF16, AMX) and the
# vector width oneDNN and inductor use (AVX2, AVX-512)
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    name, flags = platform.machine(), set[str]()
    for line in text.splitlines():
        if line.startswith("model name") and name == platform.machine():
            name = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags.update(line.split(":", 1)[1].split())
    return name, frozenset(flags)


def cpu_flags() -> list[str]:
    """Which of :data:`FLAGS` this CPU has (``/proc/cpuinfo``; empty where it cannot be read)."""
    return [f for f in FLAGS if f in _cpuinfo()[1]]


def cpu_capability() -> str:
    """The widest vector ISA PyTorch's CPU kernels use here (``DEFAULT``, ``AVX2``, ``AVX512``);
    lowered by ``ATEN_CPU_CAPABILITY``, as oneDNN's ISA is by ``ONEDNN_MAX_CPU_ISA``."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def cpu_summary() -> str:
    """``"<model name>, N cores, flags avx2 avx512_bf16 …, torch CPU capability AVX512"``."""
    name, _ = _cpuinfo()
    flags = " ".join(cpu_flags()) or "none of " + " ".join(FLAGS)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    limit = f", ONEDNN_MAX_CPU_ISA={isa}" if isa else ""
    return (
        f"{name}, {os.cpu_count()} cores, flags {flags}, torch CPU capability "
        f"{cpu_capability()}{limit}"
    )


def environment() -> dict[str, Any]:
    """The machine side of the runtime record: CPU name, flags, capability, torch version."""
    import torch

    name, _ = _cpuinfo()
    return {
        "cpu": name,
        "cpu_flags": cpu_flags(),
        "cpu_capability": cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


_MODELS: dict[str, dict[str, str]] = {}  # role -> what its model computes in (this process)


def note_model(role: str, name: str, model: Any) -> None:
    """Remember what ``role``'s model (``name``) computes in, for :func:`record`."""
    from lada.accel.precision import describe_model

    _MODELS[role] = {"model": name, "dtype": describe_model(model)}


def kernel_status() -> dict[str, str]:
    """Each C kernel library: ``"ready"`` (built here and checked against PyTorch) or why not."""
    from lada.accel.switch import current

    accel = current().accel
    if accel != "native":
        return dict.fromkeys(("decode_step", "dropout"), f"not used (runtime.accel: {accel})")
    import torch

    from lada.accel import decode_kernels, lora_dropout

    decode = decode_kernels.kernels_unsupported("cpu", torch.float32, torch.bfloat16)
    dropout = lora_dropout.kernel_unsupported()
    return {
        "decode_step": "ready (runs where a model computes in bf16 on CPU)"
        if decode is None
        else f"not built: {decode}",
        "dropout": "ready (runs for LoRA dropout on CPU)"
        if dropout is None
        else f"not built: {dropout}",
    }


def compile_status() -> dict[str, str] | None:
    """With ``runtime.accel: compile``, what torch.compile runs (:mod:`lada.accel.compiled`);
    None otherwise."""
    from lada.accel.switch import compile_enabled

    if not compile_enabled():
        return None
    from lada.accel.compiled import TRAINING

    shapes = "dynamic shapes" if TRAINING["dynamic"] else "static shapes"
    graph = ", one full graph" if TRAINING["fullgraph"] else ""
    return {
        "training": f"compiled forward ({TRAINING['backend']}, {shapes}{graph})",
        "generation": "model.generate, static KV cache, compiled forward (inductor, dynamic shapes)",
    }


def record() -> dict[str, Any]:
    """What ran: ``runtime`` (accel, generator), what torch.compile runs (``compile``, with
    ``accel: compile``), the C kernels' state, each role's compute dtype
    (roles loaded in this process), CPU and torch (``summary.json``'s ``runtime``)."""
    from lada.accel.switch import current

    rt = current()
    return {
        "accel": rt.accel,
        "generator": rt.generator,
        "compile": compile_status(),
        "kernels": kernel_status(),
        "models": dict(sorted(_MODELS.items())),
        **environment(),
    }


def record_line(rec: dict[str, Any]) -> str:
    """:func:`record` as one line of ``log.txt``."""
    kernels = ", ".join(f"{k} {v.split(' (')[0]}" for k, v in rec["kernels"].items())
    models = ", ".join(f"{r} {m['dtype']}" for r, m in rec["models"].items()) or "none loaded here"
    flags = " ".join(rec["cpu_flags"]) or "no avx2/avx512/bf16/amx flags"
    compiled = rec.get("compile")
    path = (
        f"torch.compile: training {compiled['training']}; generation {compiled['generation']}"
        if compiled
        else f"C kernels: {kernels}"
    )
    return (
        f"runtime: accel {rec['accel']} ({path}); generator {rec['generator']}; "
        f"dtype {models}; CPU {rec['cpu']} [{flags}; torch capability {rec['cpu_capability']}]; "
        f"torch {rec['torch']}"
    )
