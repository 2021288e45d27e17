"""Save and restore what a role trains: the trainable parameters (all weights, or LoRA only)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().to("cpu").contiguous().clone()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def save_trainable(model: torch.nn.Module, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(trainable_state(model), str(tmp))
    tmp.replace(path)


def load_trainable(model: torch.nn.Module, path: str | Path) -> None:
    state = load_file(str(path))
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    unknown = [n for n in state if n not in params]
    if missing or unknown:
        raise ValueError(
            f"{path}: checkpoint does not match the model "
            f"(missing {missing[:3]}, unknown {unknown[:3]})"
        )
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))
