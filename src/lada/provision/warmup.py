"""A real checkpoint warmed up on the synthetic world's general facts (``ModelConfig.warmup``).

Why (ours, docs/testbed.md): the testbed's premise 2 is that the LLM is the stronger general
reasoner: the zoo's LLM is pretrained on the world's general facts (``prepare``), but a real
pretrained checkpoint has never seen them. In the real config (``configs/real-cpu.yaml``) the
LLM and the SLMs are the same SmolLM2 checkpoint (the SLMs depth-pruned), so the LLM knew no
more of the world than they did, its paths on P's labelled questions almost never reached the
gold answer, and the SLM side of the exchange never ran (docs/results/real-lada-vs-random.md).

:func:`warm_model` fine-tunes LoRA adapters on ``samples`` general-knowledge samples of every
domain (:func:`lada.data.synthetic.general_corpus`: general entities only, never a private
fact), merges them into the weights and saves the result once, as an HF folder under
``$LADA_CACHE/warm/``, keyed by everything that determines it (source checkpoint, recipe,
world, precision). A run loads that folder as the role's base, like a prepared zoo model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from lada.config.schema import WarmupConfig
from lada.data.synthetic import SyntheticConfig, general_corpus, make_world
from lada.utils.cache import cache_root, fresh_tmp, publish
from lada.utils.seeding import derive_seed


def warmup_dir(
    source: Path,
    name: str,
    cfg: WarmupConfig,
    world_cfg: SyntheticConfig,
    dtype: str,
    gguf_file: str | None = None,
) -> Path:
    """Where the warmed checkpoint of ``name`` lives (whether made yet or not): a folder keyed
    by the source checkpoint (its name, config.json and GGUF file), the recipe, the world and
    the training precision."""
    config = (source / "config.json").read_text() if (source / "config.json").exists() else ""
    parts = [
        "warmup-v1",
        name,
        config,
        gguf_file,
        dataclasses.asdict(cfg),
        dataclasses.asdict(world_cfg),
        dtype,
    ]
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return cache_root() / "warm" / f"{Path(name).name or 'model'}-{key[:12]}"


def warm_model(
    source: str | Path,
    name: str,
    cfg: WarmupConfig,
    world_cfg: SyntheticConfig,
    *,
    gguf_file: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
) -> Path:
    """The cached warmed checkpoint of ``source`` (made now if missing): LoRA (``cfg.lora``)
    trained with ``cfg.optim`` on ``cfg.samples`` general samples of ``world_cfg``'s world,
    merged into the weights. ``gguf_file``: the weights' GGUF file inside ``source`` (if
    any). ``dtype`` / ``device``: the training precision and device
    (:mod:`lada.accel.precision`)."""
    from lada.models.loading import load_causal_lm
    from lada.train.sft import sft

    source = Path(source)
    out = warmup_dir(source, name, cfg, world_cfg, dtype, gguf_file)
    if (out / "config.json").exists():
        return out
    print(
        f"lada: warming up {name!r} on {cfg.samples} general samples of the world "
        f"(once; cached in {out})",
        file=sys.stderr,
        flush=True,
    )
    seed = derive_seed(cfg.seed, "warmup", name)
    model, tok = load_causal_lm(
        source,
        gguf_file=gguf_file,
        lora=cfg.lora,
        dtype=dtype,
        device=device,
        seed=seed,
        chat_template="auto",
    )
    lo, hi = cfg.steps
    data = general_corpus(
        make_world(world_cfg), cfg.samples, seed=seed, steps=(lo, hi), id_prefix="warmup"
    )
    stats = sft(
        model,
        tok,
        [s.prompt() for s in data],
        [s.target() for s in data],
        dataclasses.replace(cfg.optim, seed=seed),
    )
    merged = model.merge_and_unload()
    tmp = fresh_tmp(out)
    merged.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    record: dict[str, Any] = {
        "source": str(source),
        "name": name,
        "recipe": dataclasses.asdict(cfg),
        "dtype": dtype,
        "final_loss": stats.final_loss,
        "steps": stats.steps,
        "seconds": round(stats.seconds, 1),
        "tokens_per_s": round(stats.tokens_per_s),
    }
    (tmp / "lada_warmup.json").write_text(json.dumps(record, indent=2, default=str))
    publish(tmp, out)
    return out
