"""`lada models prepare`: the embedded default's tokenizer and pretrained base checkpoints.

Base models are "pretrained" on general synthetic data, never on the domain knowledge that
clients keep private (spec §1: the LLM must learn it from the SLMs):

* models named ``llm*``: many general samples of every domain, 1–6 reasoning steps;
* models named ``slm*``: a little general data with short chains
  (1–``slm_max_steps_per_question`` steps, default 2; docs/testbed.md).

Checkpoints are cached on disk under ``$LADA_CACHE`` (default ``~/.cache/lada``), keyed by a hash
of everything that determines them (recipe, model spec, world), and reused by later runs.

The embedded default's checkpoints ship with the package (``lada/zoo_weights``: the folders,
and ``manifest.json`` with every file's sha256 and the recipe that made them). A checkpoint the
cache lacks is copied from there when its key matches and every file's sha256 checks out, so
every machine starts from the same bases; anything else (another recipe, world or size, or a
shipped file that fails its check, which is reported) is pretrained here, with a progress bar.
``lada models prepare --rebuild`` pretrains them again and reports whether they match.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

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
    if (out / "tokenizer.json").exists() or install_shipped(out, "tokenizers"):
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
    if not force and ((out / "config.json").exists() or install_shipped(out, "models")):
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
    board: object = None,
) -> str:
    import torch

    from lada.utils.progress import report_to

    torch.set_num_threads(threads)
    report_to(board, name if board is not None else None)
    return str(prepare_model(name, cfg, world_cfg, force=force, progress=board is not None))


def prepare_models(
    names: list[str],
    cfg: PrepareConfig,
    world_cfg: SyntheticConfig | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Prepare several zoo models in separate processes (ours, for a 2-core CPU): the biggest
    first, alone, on ``cfg.workers`` torch threads when its pretraining costs more than all
    the others' together (the embedded default's LLM: its 1,000 steps of a 4-layer model
    against 400 of each 3-layer SLM), then the others ``cfg.workers`` at a time on one thread
    each. Run side by side with them on one thread, the LLM kept one core busy long after the
    SLMs were done. Each model always trains on the same number of threads, so a checkpoint
    does not depend on timing. Checkpoints the cache lacks come from the shipped ones when
    they match (:func:`install_shipped`); the rest are pretrained, with ``progress`` on one
    board (a bar per model on a terminal, else a line per tenth with the time left)."""
    todo = [
        n
        for n in names
        if force
        or not (
            (checkpoint_dir(n, cfg, world_cfg) / "config.json").exists()
            or install_shipped(checkpoint_dir(n, cfg, world_cfg), "models")
        )
    ]
    out = {n: checkpoint_dir(n, cfg, world_cfg) for n in names}
    if not todo:
        return out
    tokenizer_dir(cfg, world_cfg)  # once, before the workers need it

    from lada.utils.progress import Board, report_to

    # workers (and the progress queue's server) end with the run (Ctrl-C, SIGTERM)
    from lada.utils.workers import spawn_manager, worker_pool

    if cfg.workers <= 1 or len(todo) == 1:
        import queue

        with Board(queue.Queue(), "pretraining") as board:
            for n in todo:
                report_to(board.queue, n if progress else None)
                try:
                    prepare_model(n, cfg, world_cfg, progress=progress, force=force)
                finally:
                    report_to(None, None)
        return out

    todo.sort(key=lambda n: -pretrain_cost(n, cfg))
    rest = todo
    with (
        spawn_manager() as manager,
        Board(manager.Queue(), "pretraining") as board,
    ):
        q = board.queue if progress else None
        if pretrain_cost(todo[0], cfg) > sum(pretrain_cost(n, cfg) for n in todo[1:]):
            with worker_pool(1) as pool:
                pool.submit(
                    _prepare_in_worker, todo[0], cfg, world_cfg, force, cfg.workers, q
                ).result()
            rest = todo[1:]
        with worker_pool(cfg.workers) as pool:
            futures = [
                pool.submit(_prepare_in_worker, n, cfg, world_cfg, force, 1, q) for n in rest
            ]
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


# ---- shipped checkpoints ---------------------------------------------------------------------

SHIPPED_FILES_SKIPPED_IN_COMPARISON = ("lada_prepare.json",)  # holds timings


def shipped_root() -> Path:
    """The checkpoints shipped with the package (``lada/zoo_weights``)."""
    import lada

    return Path(lada.__file__).parent / "zoo_weights"


def shipped_manifest() -> dict[str, Any]:
    p = shipped_root() / "manifest.json"
    return json.loads(p.read_text()) if p.is_file() else {"models": {}, "tokenizers": {}}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _shipped_entry(out: Path, kind: str) -> dict[str, Any] | None:
    return next(
        (e for e in shipped_manifest().get(kind, {}).values() if e["dir"] == out.name), None
    )


def install_shipped(out: Path, kind: str) -> bool:
    """Copy the shipped folder whose cache key is ``out``'s name (``kind``: ``models`` or
    ``tokenizers``) into the cache at ``out``, after checking every file's sha256 against the
    manifest. False when none is shipped, or when a file fails its check (said on stderr: the
    caller then builds it here)."""
    entry = _shipped_entry(out, kind)
    if entry is None:
        return False
    src = shipped_root() / kind / entry["dir"]
    bad = [
        f
        for f, digest in entry["files"].items()
        if not (src / f).is_file() or sha256_file(src / f) != digest
    ]
    if bad:
        print(
            f"lada: shipped checkpoint {src} fails its sha256 check ({', '.join(bad)}; "
            f"manifest {shipped_root() / 'manifest.json'}): building it here instead",
            file=sys.stderr,
            flush=True,
        )
        return False
    tmp = fresh_tmp(out)
    tmp.mkdir(parents=True)
    for f in entry["files"]:
        shutil.copyfile(src / f, tmp / f)
    _publish(tmp, out)
    return True


def _folder_files(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


def ship(names: list[str], cfg: PrepareConfig, world_cfg: SyntheticConfig | None = None) -> Path:
    """Write the cached checkpoints of ``names`` (and their tokenizer) into the package's
    ``zoo_weights`` with a manifest: each file's sha256 and the recipe that made them."""
    import platform

    import torch
    import transformers

    root = shipped_root()
    wc = _world_cfg(world_cfg)
    tok = tokenizer_dir(cfg, wc)
    manifest: dict[str, Any] = {
        "about": "zoo checkpoints of the embedded default, copied into $LADA_CACHE when a run "
        "needs them (lada.provision.prepare.install_shipped); `lada models prepare --rebuild` "
        "pretrains them again and compares",
        "recipe": {
            "command": "lada models prepare",
            "prepare": asdict(cfg),
            "world": asdict(wc),
            "per_model": {n: {"spec": asdict(get_spec(n)), **recipe(n, cfg)} for n in names},
            "threads": "the largest model alone on prepare.workers torch threads when it costs "
            "more than all the others together, the others on one thread each",
            "weights": "fp32 safetensors, as pretrained",
            "made_with": {
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
                "machine": platform.machine(),
            },
        },
        "tokenizers": {"default": {"dir": tok.name, "files": _folder_files(tok)}},
        "models": {},
    }
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(tok, root / "tokenizers" / tok.name)
    for n in names:
        src = checkpoint_dir(n, cfg, wc)
        if not (src / "config.json").is_file():
            raise FileNotFoundError(f"{src}: {n} is not prepared (run `lada models prepare`)")
        shutil.copytree(src, root / "models" / src.name)
        manifest["models"][n] = {"dir": src.name, "files": _folder_files(src)}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return root


def compare_with_shipped(name: str, folder: Path) -> str:
    """Whether the checkpoint in ``folder`` equals the shipped one of ``name``: ``matches``, or
    what differs (files, and the largest weight difference)."""
    entry = shipped_manifest().get("models", {}).get(name)
    if entry is None:
        return "no shipped checkpoint to compare with"
    if entry["dir"] != folder.name:
        return f"another recipe than the shipped one ({folder.name} vs {entry['dir']})"
    mine = _folder_files(folder)
    differ = [
        f
        for f, digest in entry["files"].items()
        if f not in SHIPPED_FILES_SKIPPED_IN_COMPARISON and mine.get(f) != digest
    ]
    if not differ:
        return "matches the shipped checkpoint (sha256 of every file)"
    note = ""
    if "model.safetensors" in differ:
        from safetensors.torch import load_file

        a = load_file(folder / "model.safetensors")
        b = load_file(shipped_root() / "models" / entry["dir"] / "model.safetensors")
        if set(a) == set(b):
            diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
            note = f"; largest weight difference {diff:.3g}"
    return f"differs from the shipped checkpoint: {', '.join(differ)}{note}"
