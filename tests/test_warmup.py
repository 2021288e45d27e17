"""A real checkpoint's warm-up on the world's general facts (``ModelConfig.warmup``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lada.config import ConfigError, load_config
from lada.config.schema import WarmupConfig
from lada.data.synthetic import SyntheticConfig, general_corpus, generate, make_world
from lada.models.tokenizer import build_tokenizer
from lada.models.zoo import build_model, get_spec
from lada.runner.setup import model_loader
from lada.train.loop import OptimConfig

pytestmark = pytest.mark.usefixtures("single_thread")

WORLD = SyntheticConfig(max_steps=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny saved Llama standing in for a real pretrained checkpoint (a local folder)."""
    world = make_world(WORLD)
    texts = [s.prompt() + s.target() for s in generate(world, 200, seed=0, steps=(1, 4))]
    tok = build_tokenizer(texts, vocab_size=300)
    d = tmp_path_factory.mktemp("real")
    build_model(get_spec("slm-xs"), tok, seed=0).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _warmup(samples: int = 32) -> WarmupConfig:
    return WarmupConfig(
        samples=samples,
        steps=[1, 3],
        optim=OptimConfig(lr=3e-3, epochs=2, batch_size=8, warmup_steps=1, max_length=96),
    )


def _loss(folder: Path, texts: list[tuple[str, str]]) -> float:
    """Mean token loss of a plain (no LoRA) checkpoint on prompt + target texts."""
    from lada.models.loading import load_causal_lm

    model, tok = load_causal_lm(folder, dtype="float32", chat_template="off")
    total = 0.0
    with torch.no_grad():
        for prompt, target in texts:
            ids = tok(prompt + target, return_tensors="pt")["input_ids"]
            total += float(model(input_ids=ids, labels=ids).loss)
    return total / len(texts)


def test_warmup_learns_the_worlds_general_facts_and_is_made_once(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lada.provision import warmup

    out = warmup.warm_model(checkpoint, "tiny-real", _warmup(), WORLD, dtype="float32")
    record = json.loads((out / "lada_warmup.json").read_text())
    assert record["steps"] == 8 and record["recipe"]["samples"] == 32  # 32 samples / 8 x 2 epochs
    # merged: a plain checkpoint again (no adapter tensors), with other weights than the source
    before, after = (
        load_file(str(checkpoint / "model.safetensors")),
        load_file(str(out / "model.safetensors")),
    )
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # it learnt the world's general facts: lower loss on general questions it never saw
    fresh = general_corpus(make_world(WORLD), 24, seed=99, steps=(1, 3), id_prefix="fresh")
    texts = [(s.prompt(), s.target()) for s in fresh]
    assert _loss(out, texts) < _loss(checkpoint, texts)

    # made once: the same recipe finds the cached folder without training
    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("warm_model trained again instead of using its cache")

    monkeypatch.setattr("lada.train.sft.sft", no_training)
    assert warmup.warm_model(checkpoint, "tiny-real", _warmup(), WORLD, dtype="float32") == out
    # another recipe is another checkpoint
    assert warmup.warmup_dir(checkpoint, "tiny-real", _warmup(48), WORLD, "float32") != out


def test_a_role_with_warmup_starts_from_the_warmed_checkpoint(
    checkpoint: Path, tmp_path: Path
) -> None:
    cfg = load_config(
        None,
        [
            f"server.model={checkpoint}",
            "server.dtype=float32",
            "server.warmup.samples=16",
            "server.warmup.steps=[1, 2]",
            "server.warmup.optim.batch_size=8",
            "server.warmup.optim.epochs=1",
            "server.warmup.optim.warmup_steps=1",
            "server.warmup.optim.max_length=96",
        ],
    )
    from lada.provision.warmup import warmup_dir

    assert cfg.server.warmup is not None and cfg.server.warmup.samples == 16
    model, _ = model_loader(cfg.server, cfg, WORLD, role="server")()
    warmed = warmup_dir(checkpoint, str(checkpoint), cfg.server.warmup, WORLD, "float32")
    assert (warmed / "config.json").exists()
    saved = load_file(str(warmed / "model.safetensors"))
    name = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(dict(model.named_parameters())[name].detach(), saved[name])


def test_warmup_is_refused_where_it_cannot_apply(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'server.warmup'.*zoo model.*drop the key"):
        load_config(None, ["server.warmup.samples=16"])  # the default's server: a zoo model
    with pytest.raises(ConfigError, match=r"'clients.0.warmup.steps' = \[3, 1\].*1 <= lo <= hi"):
        load_config(None, ["clients.0.model=some/hub-model", "clients.0.warmup.steps=[3, 1]"])
    files = [
        "data.kind=files",
        "data.public_file=p.jsonl",
        "server.model=some/hub-model",
        "server.warmup.samples=16",
    ]
    files += [f"clients.{k}.{f}=x.jsonl" for k in range(3) for f in ("train_file", "test_file")]
    with pytest.raises(ConfigError, match=r"'server.warmup'.*data.kind=files has no world"):
        load_config(None, files)
