"""`lada models prepare`: the embedded default's tokenizer and pretrained base checkpoints.

Base models are "pretrained" on general synthetic data, never on the domain knowledge that
clients keep private (spec §1: the LLM must learn it from the SLMs):

* models named ``llm*``: many general samples of every domain, 1–6 reasoning steps;
* models named ``slm*``: a little general data with short chains
  (1–``slm_max_steps_per_question`` steps, default 2; docs/testbed.md).

Checkpoints are cached on disk under ``$LADA_CACHE`` (default ``~/.cache/lada``), keyed by a hash
of everything that determines them (recipe, model spec, world), and reused by later runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from lada.config.schema import PrepareConfig
from lada.data.synthetic import SyntheticConfig, general_corpus, generate, make_world
from lada.models.zoo import ZOO, build_model, get_spec
from lada.utils.cache import cache_root, fresh_tmp
from lada.utils.cache import publish as _publish
from lada.utils.seeding import derive_seed, seed_everything


def _key(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _world_cfg(world_cfg: SyntheticConfig | None) -> SyntheticConfig:
    return world_cfg if world_cfg is not None else SyntheticConfig()


def tokenizer_dir(cfg: PrepareConfig, world_cfg: SyntheticConfig | None = None) -> Path:
    """Build (once) the digit-splitting BPE tokenizer shared by the zoo models."""
    from lada.models.tokenizer import build_tokenizer

    wc = _world_cfg(world_cfg)
    key = _key("tokenizer", cfg.vocab_size, cfg.tokenizer_corpus, cfg.seed, asdict(wc))
    out = cache_root() / "tokenizers" / key
    if (out / "tokenizer.json").exists():
        return out
    world = make_world(wc)
    samples = generate(
        world, cfg.tokenizer_corpus, seed=derive_seed(cfg.seed, "tok"), knowledge="any"
    )
    samples += generate(
        world,
        cfg.tokenizer_corpus // 4,
        seed=derive_seed(cfg.seed, "tok-n"),
        knowledge="any",
        answer_format="number",
    )
    tok = build_tokenizer((s.prompt() + s.target() for s in samples), vocab_size=cfg.vocab_size)
    tmp = fresh_tmp(out)
    tok.save_pretrained(tmp)
    _publish(tmp, out)
    return out


def recipe(name: str, cfg: PrepareConfig) -> dict[str, object]:
    """The pretraining recipe of a zoo model: LLM-like or SLM-like by its name."""
    if name.startswith("llm"):
        return {
            "corpus": cfg.llm_corpus,
            "steps": (1, 6),
            "max_steps": cfg.llm_steps,
            "lr": cfg.llm_lr,
        }
    return {
        "corpus": cfg.slm_corpus,
        "steps": (1, cfg.slm_max_steps_per_question),
        "max_steps": cfg.slm_steps,
        "lr": cfg.slm_lr,
    }


def checkpoint_dir(name: str, cfg: PrepareConfig, world_cfg: SyntheticConfig | None = None) -> Path:
    wc = _world_cfg(world_cfg)
    key = _key(
        "model",
        name,
        asdict(get_spec(name)),
        recipe(name, cfg),
        cfg.batch_size,
        cfg.seed,
        cfg.vocab_size,
        cfg.tokenizer_corpus,
        asdict(wc),
    )
    return cache_root() / "models" / f"{name}-{key}"


def prepare_model(
    name: str,
    cfg: PrepareConfig,
    world_cfg: SyntheticConfig | None = None,
    progress: bool = False,
    force: bool = False,
) -> Path:
    """Return the cached checkpoint folder of zoo model ``name``, pretraining it if needed."""
    from transformers import AutoTokenizer

    from lada.train.loop import OptimConfig
    from lada.train.sft import sft

    out = checkpoint_dir(name, cfg, world_cfg)
    if (out / "config.json").exists() and not force:
        return out
    if not force:  # say so: a node meant to find prepared models would otherwise silently train
        print(
            f"lada: zoo model {name!r} is not in the model cache {cache_root()} ($LADA_CACHE): "
            "pretraining it now. If this machine should use models prepared before, export "
            "LADA_CACHE=<that folder> in this shell and start again.",
            file=sys.stderr,
            flush=True,
        )
    wc = _world_cfg(world_cfg)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir(cfg, wc))
    seed = derive_seed(cfg.seed, "prepare", name)
    seed_everything(seed)
    model = build_model(get_spec(name), tok, seed=seed)
    r = recipe(name, cfg)
    world = make_world(wc)
    data = general_corpus(world, int(r["corpus"]), seed=seed, steps=r["steps"])  # type: ignore[arg-type]
    stats = sft(
        model,
        tok,
        [s.prompt() for s in data],
        [s.target() for s in data],
        OptimConfig(
            lr=float(r["lr"]),
            max_steps=int(r["max_steps"]),
            batch_size=cfg.batch_size,
            warmup_steps=50,
            seed=seed,
        ),
        progress=progress,
    )
    tmp = fresh_tmp(out)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "lada_prepare.json").write_text(
        json.dumps(
            {
                "name": name,
                "recipe": r,
                "final_loss": stats.final_loss,
                "steps": stats.steps,
                "seconds": stats.seconds,
                "tokens_per_s": stats.tokens_per_s,
            },
            indent=2,
            default=str,
        )
    )
    if force:
        shutil.rmtree(out, ignore_errors=True)
    _publish(tmp, out)
    return out


def _prepare_in_worker(
    name: str,
    cfg: PrepareConfig,
    world_cfg: SyntheticConfig | None,
    force: bool,
    threads: int = 1,
) -> str:
    import torch

    torch.set_num_threads(threads)
    return str(prepare_model(name, cfg, world_cfg, force=force))


def prepare_models(
    names: list[str],
    cfg: PrepareConfig,
    world_cfg: SyntheticConfig | None = None,
    force: bool = False,
    progress: bool = False,
) -> dict[str, Path]:
    """Prepare several zoo models in separate processes (ours, for a 2-core CPU): the biggest
    first, alone, on ``cfg.workers`` torch threads when its pretraining costs more than all
    the others' together (the embedded default's LLM: its 1,000 steps of a 4-layer model
    against 400 of each 3-layer SLM), then the others ``cfg.workers`` at a time on one thread
    each. Run side by side with them on one thread, the LLM kept one core busy long after the
    SLMs were done. Each model always trains on the same number of threads, so a checkpoint
    does not depend on timing."""
    todo = [
        n
        for n in names
        if force or not (checkpoint_dir(n, cfg, world_cfg) / "config.json").exists()
    ]
    out = {n: checkpoint_dir(n, cfg, world_cfg) for n in names}
    if not todo:
        return out
    tokenizer_dir(cfg, world_cfg)  # once, before the workers need it
    if cfg.workers <= 1 or len(todo) == 1:
        for n in todo:
            prepare_model(n, cfg, world_cfg, progress=progress, force=force)
        return out
    from lada.utils.workers import worker_pool  # workers end with the run (Ctrl-C, SIGTERM)

    todo.sort(key=lambda n: -pretrain_cost(n, cfg))
    rest = todo
    if pretrain_cost(todo[0], cfg) > sum(pretrain_cost(n, cfg) for n in todo[1:]):
        with worker_pool(1) as pool:
            pool.submit(_prepare_in_worker, todo[0], cfg, world_cfg, force, cfg.workers).result()
        rest = todo[1:]
    with worker_pool(cfg.workers) as pool:
        futures = [pool.submit(_prepare_in_worker, n, cfg, world_cfg, force) for n in rest]
        for f in futures:
            f.result()
    return out


def pretrain_cost(name: str, cfg: PrepareConfig) -> float:
    """Relative compute of pretraining zoo model ``name``: optimiser steps x hidden^2 x layers
    (the matmul work per token; every model sees batches of the same size)."""
    spec = get_spec(name)
    steps = int(recipe(name, cfg)["max_steps"])
    return float(steps * spec.hidden_size**2 * spec.num_layers)


def is_zoo_name(name: str) -> bool:
    return name in ZOO
