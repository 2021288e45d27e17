"""Turn a RunConfig into data, model loaders and roles (no algorithm here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lada.config.schema import ModelConfig, RunConfig
from lada.data.sample import Sample


@dataclass
class RunData:
    train: list[list[Sample]]  # per client, private
    test: list[list[Sample]]  # per client, private
    public: list[Sample]
    domains: list[list[str]]  # per client
    world_cfg: Any = None  # SyntheticConfig of the synthetic world (None for file data)


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


def load_run_data(cfg: RunConfig, run_dir: Path) -> RunData:
    d = cfg.data
    if d.kind == "synthetic":
        from lada.data.split import load_split, make_split

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
        data = RunData(
            train=[c.train for c in split.clients],
            test=[c.test for c in split.clients],
            public=split.public,
            domains=[list(c.domains) for c in split.clients],
            world_cfg=split.world().config,
        )
    else:
        from lada.data.loaders import load_dataset

        if not d.public_file:
            raise ValueError("data.kind=files needs data.public_file")
        train, test, domains = [], [], []
        for k, c in enumerate(cfg.clients):
            if not c.train_file or not c.test_file:
                raise ValueError(f"clients.{k}: data.kind=files needs train_file and test_file")
            train.append(list(load_dataset(c.train_file, d.format, **d.fields)))
            test.append(list(load_dataset(c.test_file, d.format, **d.fields)))
            domains.append(sorted({s.domain for s in train[-1]}))
        data = RunData(
            train, test, list(load_dataset(d.public_file, d.format, **d.fields)), domains
        )
    if d.train_limit is not None:
        data.train = [t[: d.train_limit] for t in data.train]
    if d.test_limit is not None:
        data.test = [t[: d.test_limit] for t in data.test]
    if d.public_limit is not None:
        data.public = data.public[: d.public_limit]
    return data


def model_loader(mc: ModelConfig, cfg: RunConfig, world_cfg: Any):
    """A function that loads this role's model: a zoo name (prepared and cached locally), or a
    path / hub id through transformers (optionally GGUF, optionally LoRA)."""
    from lada.models.prepare import is_zoo_name, prepare_model

    def load() -> tuple[Any, Any]:
        from lada.models.loading import load_causal_lm

        source: str | Path = mc.model
        if is_zoo_name(mc.model):
            source = prepare_model(mc.model, cfg.prepare, world_cfg)
        return load_causal_lm(
            source, gguf_file=mc.gguf_file, lora=mc.lora, device=mc.device, dtype=mc.dtype
        )

    return load
