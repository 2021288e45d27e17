"""Turn a RunConfig into data, model loaders and roles (no algorithm here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lada.config.schema import ModelConfig, RunConfig
from lada.data.sample import Sample
from lada.data.slices import SliceError, check_client_slices, cut, limit
from lada.utils.files import atomic_write_json


@dataclass
class RunData:
    train: list[list[Sample]]  # per client, private
    test: list[list[Sample]]  # per client, private
    public: list[Sample]
    domains: list[list[str]]  # per client
    world_cfg: Any = None  # SyntheticConfig of the synthetic world (None for file data)
    used: list[dict[str, Any]] = field(default_factory=list)  # per role: file, range, count, sha256


def split_settings(cfg: RunConfig) -> dict[str, Any]:
    settings = dict(cfg.data.split)
    settings.setdefault("num_clients", len(cfg.clients))
    if settings["num_clients"] != len(cfg.clients):
        raise ValueError(
            f"data.split.num_clients={settings['num_clients']} but {len(cfg.clients)} clients are configured"
        )
    return settings


def world_config(cfg: RunConfig) -> Any:
    """The synthetic world (domain knowledge) the zoo models are prepared for."""
    from lada.data.split import SplitConfig

    if cfg.data.kind != "synthetic":
        return None
    return SplitConfig.from_overrides(split_settings(cfg)).synthetic()


def load_file_data(cfg: RunConfig, only_client: int | None = None) -> RunData:
    """File data: each client's train/test slices and P, cut by their ranges, checked
    disjoint per client, then shortened by the ``*_limit`` settings. With ``only_client`` the
    other clients' lists stay empty (a Flower SuperNode loads its own data only)."""
    from lada.data.loaders import load_dataset

    d = cfg.data
    if not d.public_file:
        raise ValueError("data.kind=files needs data.public_file")
    files: dict[str, list[Sample]] = {}

    def load(path: str) -> list[Sample]:
        if path not in files:
            files[path] = list(load_dataset(path, d.format, **d.fields))
        return files[path]

    public = cut("public", "data.public_range", d.public_file, load(d.public_file), d.public_range)
    n = len(cfg.clients)
    data = RunData([[] for _ in range(n)], [[] for _ in range(n)], [], [[] for _ in range(n)])
    for k, c in enumerate(cfg.clients):
        if only_client is not None and k != only_client:
            continue
        if not c.train_file or not c.test_file:
            raise ValueError(f"clients.{k}: data.kind=files needs train_file and test_file")
        train = cut(
            f"client_{k}/train",
            f"clients.{k}.train_range",
            c.train_file,
            load(c.train_file),
            c.train_range,
        )
        test = cut(
            f"client_{k}/test",
            f"clients.{k}.test_range",
            c.test_file,
            load(c.test_file),
            c.test_range,
        )
        check_client_slices(train, test, public, allow_overlap=d.allow_overlap)
        data.train[k] = limit(train, d.train_limit).samples
        data.test[k] = limit(test, d.test_limit).samples
        data.domains[k] = sorted({s.domain for s in data.train[k]})
        data.used += [train.record(), test.record()]
    data.public = limit(public, d.public_limit).samples
    data.used.insert(0, public.record())
    return data


def load_run_data(cfg: RunConfig, run_dir: Path, record: bool = True) -> RunData:
    """The run's data; with ``record`` what was used goes to ``run_dir/data_used.json``."""
    d = cfg.data
    data = load_file_data(cfg) if d.kind == "files" else load_synthetic_data(cfg, run_dir)
    if record:
        atomic_write_json(run_dir / "data_used.json", {"kind": d.kind, "slices": data.used})
    return data


def load_synthetic_data(cfg: RunConfig, run_dir: Path) -> RunData:
    """The synthetic split (made in ``run_dir/data`` unless ``data.dir`` names one), limited."""
    from lada.data.split import load_split, make_split

    d = cfg.data
    if any(c.train_range or c.test_range for c in cfg.clients) or d.public_range:
        raise SliceError(
            "train_range / test_range / public_range apply to data.kind=files only "
            "(synthetic splits are sized with data.split)"
        )
    split_dir = Path(d.dir) if d.dir else run_dir / "data"
    if not (split_dir / "manifest.json").exists():
        if d.dir:
            raise FileNotFoundError(
                f"data.dir={d.dir}: no manifest.json (make it with `lada data make`)"
            )
        make_split(split_dir, seed=cfg.seed, **split_settings(cfg))
    split = load_split(split_dir)
    if len(split.clients) != len(cfg.clients):
        raise ValueError(
            f"{split_dir}: {len(split.clients)} clients in the split, {len(cfg.clients)} configured"
        )
    public = limit(cut("public", "data.split", split_dir, split.public, None), d.public_limit)
    data = RunData(
        train=[],
        test=[],
        public=public.samples,
        domains=[list(c.domains) for c in split.clients],
        world_cfg=split.world().config,
        used=[public.record()],
    )
    for k, c in enumerate(split.clients):
        train = limit(
            cut(f"client_{k}/train", "data.split", split_dir, c.train, None), d.train_limit
        )
        test = limit(cut(f"client_{k}/test", "data.split", split_dir, c.test, None), d.test_limit)
        data.train.append(train.samples)
        data.test.append(test.samples)
        data.used += [train.record(), test.record()]
    return data


def model_loader(mc: ModelConfig, cfg: RunConfig, world_cfg: Any, *, role: str):
    """A function that loads this role's model: a zoo name (prepared and cached locally), or a
    path / hub id through transformers (optionally GGUF, optionally LoRA). ``role``
    (``server``, ``client_K``) and the run's seed fix the LoRA adapters' initialisation, so a
    run with the same seed starts from the same adapters in every process."""
    from lada.provision.prepare import is_zoo_name, prepare_model
    from lada.utils.seeding import derive_seed

    def load() -> tuple[Any, Any]:
        from lada.accel import configure
        from lada.accel.decoders import choose_decoder
        from lada.accel.runtime import note_model
        from lada.models.loading import load_causal_lm
        from lada.provision.fetch import fetch_model, is_real_name

        configure(cfg.runtime)  # this process's speed path: the run's (every engine's workers)
        source: str | Path = mc.model
        if is_zoo_name(mc.model):
            source = prepare_model(mc.model, cfg.prepare, world_cfg)
        elif is_real_name(mc.model):
            source = fetch_model(mc.model)
        gguf_file = mc.gguf_file
        if mc.warmup is not None:  # the world's general facts first (lada.provision.warmup)
            from lada.provision.warmup import warm_model

            if world_cfg is None:
                raise ValueError(f"{role}: warmup needs synthetic data (the world's facts)")
            source = warm_model(
                source,
                mc.model,
                mc.warmup,
                world_cfg,
                gguf_file=gguf_file,
                dtype=mc.dtype,
                device=mc.device,
            )
            gguf_file = None  # the warmed checkpoint is a plain HF folder
        model, tokenizer = load_causal_lm(
            source,
            gguf_file=gguf_file,
            lora=mc.lora,
            device=mc.device,
            dtype=mc.dtype,
            chat_template=mc.chat_template,
            seed=derive_seed(cfg.seed, "lora", role),
        )
        choose_decoder(model, cfg.runtime.generator)  # generator 'lean' it can't run: say so now
        note_model(role, mc.model, model)  # for summary.json's runtime record
        return model, tokenizer

    return load
