"""Federated splits of the synthetic benchmark: K clients' private train/test data + a public set.

Layout written by :func:`make_split` (same seed and settings -> byte-identical files)::

    out_dir/clients/client_{k}/train.jsonl
    out_dir/clients/client_{k}/test.jsonl
    out_dir/public.jsonl
    out_dir/manifest.json      seed, settings, world, client domains, counts and sha256 of files

:func:`load_split` reads it back and refuses files whose sha256 differs from the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import types
import typing
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from lada.data.errors import DataError
from lada.data.jsonl import write_jsonl
from lada.data.loaders import load_lada_jsonl
from lada.data.sample import Sample
from lada.data.stats import dataset_stats
from lada.data.synthetic import Knowledge, SyntheticConfig, World, generate, make_world
from lada.utils.files import atomic_write_json

__all__ = [
    "ClientData",
    "FederatedSplit",
    "SplitConfig",
    "load_split",
    "make_split",
    "sha256_file",
]

MANIFEST = "manifest.json"
FORMAT = "lada-split/1"


@dataclass(frozen=True)
class SplitConfig(SyntheticConfig):
    """How to split: clients, sizes, partition and knowledge, plus every synthetic setting."""

    num_clients: int = 3
    train_per_client: int = 1000
    test_per_client: int = 500
    public_size: int = 1000
    partition: Literal["primary", "dirichlet"] = "primary"
    dirichlet_alpha: float = 0.5
    client_knowledge: Knowledge = "private"  # the clients' train files
    public_knowledge: Knowledge = "mixed"
    # "mixed": this share of P names private entities (unlabelled unless public_private_labels)
    public_private_fraction: float = 0.5
    client_private_fraction: float = 0.5  # used only when client_knowledge == "mixed"
    # the public set's own step weights (one per step count); None: those of the clients' data
    public_step_weights: tuple[float, ...] | None = None
    # testbed (ours, docs/testbed.md): step ranges (lo, hi) per part; None = min..max_steps
    train_steps: tuple[int, ...] | None = (1, 2)
    test_steps: tuple[int, ...] | None = (2, 4)
    public_steps: tuple[int, ...] | None = (1, 4)
    # client test files: "mixed" = this share of kind "private", the rest kind "general"
    test_knowledge: Knowledge = "mixed"
    test_private_fraction: float = 0.5
    # False (P is public): a P question naming a private entity has no rationale and no answer
    public_private_labels: bool = False

    def __post_init__(self) -> None:
        if self.public_step_weights is not None:
            weights = tuple(float(w) for w in self.public_step_weights)
            object.__setattr__(self, "public_step_weights", weights)
        for name in ("train_steps", "test_steps", "public_steps"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))
        super().__post_init__()

    def steps_of(self, part: Literal["train", "test", "public"]) -> tuple[int, int]:
        """The (lo, hi) step range of a part of the split (the config's range when None)."""
        value = getattr(self, f"{part}_steps")
        if value is None:
            return self.min_steps, self.max_steps
        return value[0], value[1]

    def validate(self) -> None:
        super().validate()
        psw = self.public_step_weights
        if psw is not None and (
            len(psw) != self.max_steps - self.min_steps + 1 or min(psw) < 0 or sum(psw) <= 0
        ):
            raise ValueError(
                "SplitConfig: public_step_weights needs one weight >= 0 per step count in "
                f"min_steps..max_steps ({self.max_steps - self.min_steps + 1}), not all zero"
            )
        for name in ("train_steps", "test_steps", "public_steps"):
            value = getattr(self, name)
            if value is not None and not (
                len(value) == 2 and self.min_steps <= value[0] <= value[1] <= self.max_steps
            ):
                raise ValueError(
                    f"SplitConfig: {name} must be two step counts lo,hi with "
                    f"{self.min_steps} <= lo <= hi <= {self.max_steps}, got {value}"
                )
        if self.num_clients < 1:
            raise ValueError("SplitConfig: num_clients must be >= 1")
        for name in ("train_per_client", "test_per_client", "public_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"SplitConfig: {name} must be >= 0")
        if self.partition not in ("primary", "dirichlet"):
            raise ValueError(
                f"SplitConfig: partition must be 'primary' or 'dirichlet', got {self.partition!r}"
            )
        if self.dirichlet_alpha <= 0:
            raise ValueError("SplitConfig: dirichlet_alpha must be > 0")
        for name in ("public_private_fraction", "client_private_fraction", "test_private_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SplitConfig: {name} must be in [0, 1]")

    def synthetic(self) -> SyntheticConfig:
        """The synthetic part of these settings."""
        names = {f.name for f in fields(SyntheticConfig)}
        return SyntheticConfig(**{k: v for k, v in self.__dict__.items() if k in names})

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> SplitConfig:
        """Settings from ``key=value`` strings (``{"num_clients": "5"}``), types converted;
        an unknown key or a bad value raises ``ValueError`` naming it."""
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known:
                raise ValueError(
                    f"unknown split setting {key!r}; known: {', '.join(sorted(known))}"
                )
            try:
                kwargs[key] = _convert(value, hints[key]) if isinstance(value, str) else value
            except ValueError as e:
                raise ValueError(f"split setting {key}={value!r}: {e}") from None
        return cls(**kwargs)


def _convert(text: str, hint: Any) -> Any:
    """Convert ``text`` to the type ``hint`` (int, float, str, Literal, tuple[X, ...], X | None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    text = text.strip()
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", "") and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(text, inner)
    if origin is Literal:
        if text not in args:
            raise ValueError(f"expected one of {list(args)}")
        return text
    if origin is tuple:
        return tuple(_convert(part, args[0]) for part in text.split(",") if part.strip())
    if hint is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError("expected true or false")
    if hint in (int, float, str):
        try:
            return hint(text)
        except ValueError:
            raise ValueError(f"expected {hint.__name__}") from None
    raise ValueError(f"cannot parse a value of type {hint}")  # pragma: no cover


@dataclass(frozen=True)
class ClientData:
    train: list[Sample]
    test: list[Sample]
    domains: tuple[str, ...]


@dataclass(frozen=True)
class FederatedSplit:
    clients: list[ClientData]
    public: list[Sample]
    manifest: dict[str, Any]

    @property
    def config(self) -> SplitConfig:
        return SplitConfig(**self.manifest["settings"])

    def world(self) -> World:
        return make_world(self.config.synthetic())


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sub_seed(seed: int, *parts: object) -> int:
    key = "/".join(["lada-split", str(seed), *map(str, parts)]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big")


def _client_mixes(cfg: SplitConfig, seed: int) -> list[dict[str, float]]:
    """Each client's domain weights: one primary domain, or a Dirichlet(alpha) mix."""
    domains = cfg.domains
    if cfg.partition == "primary":
        return [{domains[k % len(domains)]: 1.0} for k in range(cfg.num_clients)]
    mixes = []
    for k in range(cfg.num_clients):
        rng = random.Random(_sub_seed(seed, "dirichlet", k))
        draws = [rng.gammavariate(cfg.dirichlet_alpha, 1.0) for _ in domains]
        total = sum(draws) or 1.0
        mixes.append({d: round(g / total, 6) for d, g in zip(domains, draws, strict=True)})
    return mixes


def _client_samples(
    world: World,
    cfg: SplitConfig,
    mix: dict[str, float],
    n: int,
    seed: int,
    prefix: str,
    part: Literal["train", "test"],
) -> list[Sample]:
    names = list(mix)
    knowledge, fraction = (
        (cfg.client_knowledge, cfg.client_private_fraction)
        if part == "train"
        else (cfg.test_knowledge, cfg.test_private_fraction)
    )
    return generate(
        world,
        n,
        seed=seed,
        domains=names,
        domain_weights=[mix[d] for d in names],
        knowledge=knowledge,
        private_fraction=fraction,
        steps=cfg.steps_of(part),
        id_prefix=prefix,
    )


def unlabelled(sample: Sample) -> Sample:
    """``sample`` without its rationale, answer and the total in ``meta`` (an unlabelled
    public question: only a client that knows the facts can answer it)."""
    meta = {k: v for k, v in sample.meta.items() if k != "total"}
    meta["labelled"] = False
    return replace(sample, answer="", steps=(), meta=meta)


def _public_samples(
    world: World, cfg: SplitConfig, seed: int, client_domains: list[str]
) -> list[Sample]:
    """P: with ``public_knowledge="mixed"``, general labelled questions over every domain plus
    ``public_private_fraction`` of questions naming private entities of the clients' domains;
    those carry no label unless ``public_private_labels`` (docs/testbed.md)."""
    steps = cfg.steps_of("public")
    common: dict[str, Any] = {"steps": steps, "step_weights": cfg.public_step_weights}
    if cfg.public_knowledge != "mixed":
        samples = generate(
            world,
            cfg.public_size,
            seed=seed,
            knowledge=cfg.public_knowledge,
            id_prefix="public",
            **common,
        )
    else:
        n_private = round(cfg.public_private_fraction * cfg.public_size)
        general = generate(
            world,
            cfg.public_size - n_private,
            seed=_sub_seed(seed, "general"),
            knowledge="general",
            id_prefix="g",
            **common,
        )
        private = generate(
            world,
            n_private,
            seed=_sub_seed(seed, "private"),
            domains=client_domains,
            knowledge="private",
            id_prefix="p",
            **common,
        )
        samples = general + private
        random.Random(_sub_seed(seed, "order")).shuffle(samples)
        samples = [replace(s, id=f"public-{i:05d}") for i, s in enumerate(samples)]
    if cfg.public_private_labels:
        return samples
    return [unlabelled(s) if s.meta.get("private") else s for s in samples]


def private_entities(world: World) -> dict[str, list[str]]:
    """``{domain: [names of its private entities]}`` (the manifest's "private_entities")."""
    return {d.name: [e.name for e in d.private] for d in world.domains}


def make_split(
    out_dir: str | os.PathLike[str], *, seed: int = 0, **settings: Any
) -> dict[str, Any]:
    """Generate and write a federated split; returns the manifest (also in manifest.json)."""
    known = {f.name for f in fields(SplitConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown split setting(s) {unknown}; known: {', '.join(sorted(known))}")
    cfg = SplitConfig(**settings)
    world = make_world(cfg.synthetic())
    out = Path(out_dir)
    files: dict[str, dict[str, Any]] = {}
    clients_meta = []
    parts: dict[str, list[Sample]] = {}
    for k, mix in enumerate(_client_mixes(cfg, seed)):
        for part, n in (("train", cfg.train_per_client), ("test", cfg.test_per_client)):
            samples = _client_samples(
                world, cfg, mix, n, _sub_seed(seed, "client", k, part), f"c{k}-{part}", part
            )
            parts[f"clients/client_{k}/{part}.jsonl"] = samples
        used = sorted(
            {
                s.domain
                for key in ("train", "test")
                for s in parts[f"clients/client_{k}/{key}.jsonl"]
            }
        )
        clients_meta.append(
            {
                "client": k,
                "domains": used if used else [d for d, w in mix.items() if w > 0],
                "domain_weights": mix,
                "train": f"clients/client_{k}/train.jsonl",
                "test": f"clients/client_{k}/test.jsonl",
            }
        )
    client_domains = [d for d in world.domain_names if any(d in c["domains"] for c in clients_meta)]
    parts["public.jsonl"] = _public_samples(
        world, cfg, _sub_seed(seed, "public"), client_domains or list(world.domain_names)
    )
    for rel, samples in parts.items():
        write_jsonl(out / rel, samples)
        files[rel] = {
            "num_samples": len(samples),
            "sha256": sha256_file(out / rel),
            "stats": dataset_stats(samples),
        }
    manifest = {
        "format": FORMAT,
        "seed": seed,
        "settings": cfg_to_dict(cfg),
        "world": world.to_dict(),
        "private_entities": private_entities(world),
        "clients": clients_meta,
        "public": "public.jsonl",
        "files": files,
        "total_samples": sum(f["num_samples"] for f in files.values()),
    }
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def cfg_to_dict(cfg: SplitConfig) -> dict[str, Any]:
    """JSON-ready settings (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.__dict__.items()}


def load_split(split_dir: str | os.PathLike[str]) -> FederatedSplit:
    """Read a split written by :func:`make_split`, verifying every file's sha256 first."""
    root = Path(split_dir)
    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("no manifest.json: not a split directory", path=manifest_path) from None
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", path=manifest_path, line=e.lineno) from None
    if manifest.get("format") != FORMAT:
        raise DataError(
            f"unknown split format {manifest.get('format')!r}", path=manifest_path, field="format"
        )
    loaded: dict[str, list[Sample]] = {}
    for rel, info in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            raise DataError("file listed in manifest.json is missing", path=path)
        digest = sha256_file(path)
        if digest != info["sha256"]:
            raise DataError(
                f"sha256 mismatch: file was modified after the split was made "
                f"(manifest {info['sha256'][:12]}..., file {digest[:12]}...)",
                path=path,
            )
        samples = list(load_lada_jsonl(path))
        if len(samples) != info["num_samples"]:  # pragma: no cover - the hash guards this
            raise DataError(
                f"expected {info['num_samples']} samples, got {len(samples)}", path=path
            )
        loaded[rel] = samples
    clients = [
        ClientData(loaded[c["train"]], loaded[c["test"]], tuple(c["domains"]))
        for c in manifest["clients"]
    ]
    return FederatedSplit(clients, loaded[manifest["public"]], manifest)
