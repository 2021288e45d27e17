"""`lada export`: a run's model at a round as a folder that transformers (or peft) loads.

A run keeps only what it trains (``save_trainable``): each client's SLM in
``RUN/clients/client_K/round_NNN.safetensors`` and the server's LLM in
``RUN/checkpoints/round_NNN/llm.safetensors``, all weights or LoRA adapters only. Such a file
is the model's *state*, not a model folder. Here the role's base model is loaded exactly as the
run loaded it (zoo model from ``$LADA_CACHE``, local folder or hub id; LoRA applied as
configured), the round's state is put in, and the result is written with ``save_pretrained``
plus its tokenizer:

* full fine-tuning: ``AutoModelForCausalLM.from_pretrained(DIR)`` loads it;
* LoRA: an adapter folder for ``PeftModel.from_pretrained(base, DIR)`` (its
  ``base_model_name_or_path`` names the base), or with ``merge`` a plain model folder.

``lada eval --model`` accepts a run's checkpoint paths directly (:func:`parse_run_checkpoint`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

CLIENT_FILE = re.compile(r"round_(\d+)\.safetensors")
ROUND_DIR = re.compile(r"round_(\d+)")


class ExportError(FileNotFoundError):
    """A run checkpoint that cannot be found or exported (the CLI prints it, exit 2)."""


def parse_run_checkpoint(path: str | Path) -> tuple[Path, int, int | None] | None:
    """``(run_dir, round, client)`` (client None: the server) when ``path`` is a run's
    checkpoint: ``RUN/clients/client_K/round_NNN.safetensors``, ``RUN/checkpoints/round_NNN``
    or ``RUN/checkpoints/round_NNN/llm.safetensors``; None for anything else."""
    p = Path(path)
    if p.name == "llm.safetensors":
        p = p.parent
    m = CLIENT_FILE.fullmatch(p.name)
    if m and re.fullmatch(r"client_\d+", p.parent.name) and p.parent.parent.name == "clients":
        run_dir, client = p.parent.parent.parent, int(p.parent.name.split("_")[1])
    elif ROUND_DIR.fullmatch(p.name) and p.parent.name == "checkpoints":
        run_dir, client = p.parent.parent, None
        m = ROUND_DIR.fullmatch(p.name)
    else:
        return None
    if not (run_dir / "config.yaml").is_file():
        return None
    assert m is not None
    return run_dir, int(m.group(1)), client


def _world_config(cfg: Any, run_dir: Path) -> Any:
    """The synthetic world the run's zoo models were prepared for (from its split manifest)."""
    if cfg.data.kind != "synthetic":
        return None
    manifest = Path(cfg.data.dir or run_dir / "data") / "manifest.json"
    if manifest.is_file():
        from lada.data.split import SplitConfig

        return SplitConfig(**json.loads(manifest.read_text())["settings"]).synthetic()
    from lada.runner.setup import world_config

    return world_config(cfg)


def _last_complete_round(run_dir: Path) -> int:
    state = run_dir / "state.json"
    return int(json.loads(state.read_text())["last_complete_round"]) if state.is_file() else -1


def checkpoint_file(run_dir: Path, round_idx: int, client: int | None) -> tuple[Path | None, str]:
    """The state file that holds the role's model at the end of ``round_idx`` (None: the base
    model), and a note on how it was found."""
    if round_idx == 0:
        return None, "round 0: the base model (before training)"
    if client is None:
        f = run_dir / "checkpoints" / f"round_{round_idx:03d}" / "llm.safetensors"
        if not f.is_file():
            kept = sorted(p.name for p in (run_dir / "checkpoints").glob("round_*"))
            raise ExportError(
                f"{f}: no server checkpoint of round {round_idx} (kept: {', '.join(kept) or 'none'}"
                "; keep_checkpoints=last keeps only the last round)"
            )
        return f, f"server checkpoint of round {round_idx}"
    folder = run_dir / "clients" / f"client_{client}"
    saved = sorted(
        int(m.group(1))
        for p in folder.glob("round_*.safetensors")
        if (m := CLIENT_FILE.fullmatch(p.name))
    )
    before = [r for r in saved if r <= round_idx]
    if not before:
        return None, f"client {client} saved no round up to {round_idx}: its base model"
    f = folder / f"round_{before[-1]:03d}.safetensors"
    if before[-1] != round_idx:
        return f, f"client {client} missed round {round_idx}: its state of round {before[-1]}"
    return f, f"client {client}'s state of round {round_idx}"


def load_run_checkpoint(run_dir: str | Path, round_idx: int, client: int | None) -> tuple[Any, Any]:
    """``(model, tokenizer)``: the role's model as it was at the end of ``round_idx``."""
    model, tok, _ = load_run_model(Path(run_dir), round_idx, client)
    return model, tok


def load_run_model(
    run_dir: Path, round_idx: int, client: int | None
) -> tuple[Any, Any, dict[str, Any]]:
    """The model, its tokenizer, and where they came from (for ``lada_export.json``)."""
    from lada.config import load_config

    if not (run_dir / "config.yaml").is_file():
        raise ExportError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    if client is not None and not 0 <= client < len(cfg.clients):
        raise ExportError(f"{run_dir}: no client {client} (clients 0..{len(cfg.clients) - 1})")
    last = _last_complete_round(run_dir)
    if not 0 <= round_idx <= max(last, 0):
        raise ExportError(
            f"{run_dir}: no round {round_idx} (complete rounds: 0..{last})"
            if last >= 0
            else f"{run_dir}: no complete round yet"
        )
    ckpt, note = checkpoint_file(run_dir, round_idx, client)
    mc = cfg.server if client is None else cfg.clients[client]
    from lada.runner.setup import model_loader
    from lada.utils.model_state import load_trainable

    role = "server" if client is None else f"client_{client}"
    model, tok = model_loader(mc, cfg, _world_config(cfg, run_dir), role=role)()
    if ckpt is not None:
        load_trainable(model, ckpt)
    info = {
        "run_dir": str(run_dir.resolve()),
        "round": round_idx,
        "role": "server" if client is None else f"client {client}",
        "model": mc.model,
        "checkpoint": str(ckpt) if ckpt else None,
        "note": note,
        "lora": mc.lora is not None,
    }
    return model.eval(), tok, info


def export(
    run_dir: str | Path,
    round_idx: int,
    client: int | None,
    out: str | Path,
    merge: bool = False,
) -> dict[str, Any]:
    """Write the role's model at ``round_idx`` to ``out`` (see the module doc); returns what
    was written (also in ``out/lada_export.json``)."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty: choose another --out")
    model, tok, info = load_run_model(run_dir, round_idx, client)
    is_peft = hasattr(model, "peft_config")
    if merge and not is_peft:
        raise ExportError(f"--merge: {info['role']} trains all weights (no LoRA adapters)")
    if is_peft and merge:
        model = model.merge_and_unload()
    info["format"] = (
        "peft adapter (PeftModel.from_pretrained)"
        if is_peft and not merge
        else "transformers model (AutoModelForCausalLM.from_pretrained)"
    )
    # a fresh folder of its own (never a predictable name a link could be planted at)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "lada_export.json").write_text(json.dumps(info, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp's folder is private; an exported model is to be shared
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    tmp.replace(out)
    info["out"] = str(out)
    return info
