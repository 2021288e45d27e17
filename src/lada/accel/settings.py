"""The ``runtime:`` config section: which speed path a run takes (torch-free, so that configs
are checked without importing torch). :func:`lada.accel.configure` applies it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ACCEL = ("off", "torch", "compile", "native")
GENERATORS = ("auto", "lean", "hf")


@dataclass
class RuntimeConfig:
    """How fast code runs, never what it computes beyond float round-off and the random stream
    of LoRA dropout (all recorded in summary.json's ``runtime``)."""

    # off: plain PyTorch / transformers everywhere (forward passes under the model's autocast,
    # torch's own dropout, the model's own forward for generation); torch: LaDa's PyTorch speed
    # path (frozen weights cast once per training run or generation call, LoRA dropout masks
    # from 16-bit randoms on CPU, the lean decoder with weights packed for oneDNN); compile:
    # off's plain path with the model's forward in torch.compile (inductor) for training and
    # scoring, and generation by model.generate with a static KV cache and its compiled
    # forward (lada.accel.compiled; compiled on first use); native: torch's path plus C
    # kernels (compiled on first use, checked against PyTorch) where they build
    accel: Literal["off", "torch", "compile", "native"] = "native"
    # generation (evaluation, paths): lean = lada.accel.lean_decoder (Llama / Qwen2: fused
    # projections, LoRA folded in; an error on other models); hf = the model's own forward in
    # LaDa's decode loop; auto = lean where it can run (hf with accel off); with accel
    # compile, auto and hf are the compiled model.generate and lean is an error
    generator: Literal["auto", "lean", "hf"] = "auto"


# keys that no longer exist -> the keys that replaced them (read by the config loader)
RETIRED_MODEL_KEYS = {"decoder": "runtime.generator"}
