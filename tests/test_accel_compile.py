"""``runtime.accel: compile``: torch.compile behind the accel seam, recorded, never a silent
fallback; every generation of a run goes through ``lada.accel.generator``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lada.accel import generator, record, record_line, training, using
from lada.accel.compiled import CompiledGenerator, CompileError, is_compiled
from lada.config import load_config

pytestmark = pytest.mark.usefixtures("single_thread")

TEXTS = ["Double 3\nAnswer: 6", "Add 2 and 5\nAnswer: 7", "Double 4\nAnswer: 8"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lada.models import build_model, build_tokenizer
    from lada.models.zoo import ModelSpec

    path = tmp_path_factory.mktemp("tiny-llama")
    tok = build_tokenizer(TEXTS * 3, vocab_size=120)
    build_model(ModelSpec("t", "llama", 32, 1, 2, 2, 64), tok, seed=0).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _load(path: Path):
    from lada.models.loading import LoraSettings, load_causal_lm

    return load_causal_lm(path, lora=LoraSettings(r=2, alpha=4, dropout=0.1), device="cpu")


def test_the_config_takes_compile_and_the_record_says_it_ran():
    cfg = load_config(None, ["runtime.accel=compile"])
    assert cfg.runtime.accel == "compile"
    with using(accel="compile"):
        rec = record()
        line = record_line(rec)
    assert rec["accel"] == "compile" and rec["torch"] == torch.__version__
    assert "compiled forward" in rec["compile"]["training"]
    assert "static KV cache" in rec["compile"]["generation"]
    assert all(v == "not used (runtime.accel: compile)" for v in rec["kernels"].values())
    assert line.startswith("runtime: accel compile (torch.compile: training compiled forward")
    assert f"torch {torch.__version__}" in line
    with using(accel="native"):
        assert record()["compile"] is None


def test_compile_swaps_in_a_compiled_forward_for_the_block_only(checkpoint):
    from lada.accel.cast_weights import CastLinear
    from lada.accel.lora_dropout import CpuDropout

    model, tok = _load(checkpoint)
    with using(accel="compile"), training(model):
        assert is_compiled(model)
        with training(model):  # a nested block (scoring inside training) shares it
            assert is_compiled(model)
        assert is_compiled(model)
        # the library path: none of LaDa's copies (no cast layers, torch's own dropout)
        assert not any(isinstance(m, CastLinear | CpuDropout) for m in model.modules())
    assert not is_compiled(model) and "forward" not in vars(model)
    with using(accel="compile"):
        gen = generator(model, tok)
        assert isinstance(gen, CompiledGenerator) and gen.engine == "compile"
    with using(accel="compile", generator="lean"), pytest.raises(ValueError, match="compile"):
        generator(model, tok)


def test_generation_that_transformers_does_not_compile_is_an_error(checkpoint, monkeypatch):
    from transformers import CompileConfig

    from lada.accel import compiled

    model, tok = _load(checkpoint)
    plain = CompileConfig(fullgraph=False, dynamic=True, mode="default")  # CPU: not compiled
    monkeypatch.setattr(compiled, "generate_compile_config", lambda: plain)
    with using(accel="compile"), pytest.raises(CompileError, match="did not compile"):
        generator(model, tok).paths(["Double 3"], max_new_tokens=3)


def test_a_compile_failure_is_a_clear_error_not_a_fallback(checkpoint, monkeypatch):
    from lada.accel import compiled

    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here")

    monkeypatch.setitem(compiled.TRAINING, "backend", broken)
    model, tok = _load(checkpoint)
    ids = torch.tensor([[1, 5, 7, 9]])
    with (
        using(accel="compile"),
        training(model),
        pytest.raises(CompileError, match=r"runtime\.accel: compile: .*no compiler here"),
    ):
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert not is_compiled(model)


@pytest.mark.slow
def test_a_compiled_training_step_and_compiled_generation_give_finite_output(checkpoint):
    from torch._dynamo.utils import counters

    from lada.eval.generate import _cut_after_answer, hf_generate_paths
    from lada.train.loop import OptimConfig
    from lada.train.sft import sft

    model, tok = _load(checkpoint)
    before = counters["stats"]["unique_graphs"]
    with using(accel="compile"):
        stats = sft(
            model,
            tok,
            ["Double 3", "Add 2 and 5", "Double 4"],
            ["Answer: 6", "Answer: 7", "Answer: 8"],
            OptimConfig(lr=1e-3, batch_size=2, max_steps=2, max_length=32),
        )
        assert counters["stats"]["unique_graphs"] > before  # dynamo compiled the forward
        assert stats.steps == 2 and all(math.isfinite(x) for x in stats.step_losses)
        prompts = ["Double 3", "Add 2 and 5", "Double 44"]
        paths = generator(model, tok).paths(prompts, max_new_tokens=6, batch_size=2)
        drawn = generator(model, tok).samples(
            prompts[:2], samples=2, temperature=0.7, seed=3, max_new_tokens=6
        )
        again = generator(model, tok).samples(
            prompts[:2], samples=2, temperature=0.7, seed=3, max_new_tokens=6
        )
    assert len(paths) == 3 and all(isinstance(p, str) for p in paths)
    assert [len(d) for d in drawn] == [2, 2] and drawn == again  # seeded
    assert not is_compiled(model)
    # greedy stays greedy: the same paths as the eager model.generate, LoRA merged
    model.merge_adapter()
    try:
        eager = hf_generate_paths(model, tok, prompts, max_new_tokens=6, batch_size=2)
    finally:
        model.unmerge_adapter()
    assert paths == [_cut_after_answer(t) for t in eager]


def test_every_generation_goes_through_the_seam(monkeypatch):
    """Evaluation, the server's and the oracle's paths, the server's SLM copy and sampled
    paths all ask ``lada.accel.generator``: what it returns is what they get."""
    from types import SimpleNamespace

    import lada.accel
    from lada.data.sample import Sample
    from lada.eval.accuracy import evaluate
    from lada.eval.consistency import agreement_counts
    from lada.federation.oracle import llm_own_paths
    from lada.federation.server import ServerRole
    from lada.federation.teachable import server_slm_paths

    asked: list[tuple[str, object]] = []

    class Recorder:
        engine = "recorded"

        def __init__(self, model: object, tokenizer: object) -> None:
            self.model = model

        def paths(self, prompts, **kw):
            asked.append(("paths", self.model))
            return ["Answer: 7"] * len(prompts)

        def samples(self, prompts, *, samples, **kw):
            asked.append(("samples", self.model))
            return [["Answer: 7"] * samples for _ in prompts]

    monkeypatch.setattr(lada.accel, "generator", Recorder, raising=False)
    sample = Sample("p0", "d", "Add 3 and 4", "7", "number")
    distill = SimpleNamespace(max_new_tokens=8, gen_batch_size=4)
    server = SimpleNamespace(
        settings=SimpleNamespace(seed=0, distill=distill),
        by_id={"p0": sample},
        model="llm",
        tokenizer=None,
        slm=lambda: ("server slm", None),
    )
    assert evaluate("model", None, [sample]).accuracy == 1.0
    assert agreement_counts("sampler", None, ["Add 3 and 4"], ["7"], samples=3).tolist() == [3]
    assert server_slm_paths(server, 1, ["p0"]) == {"p0": "Answer: 7"}
    assert llm_own_paths(server, 1, ["p0"]) == ["Answer: 7"]
    assert ServerRole.own_paths(server, 1, ["p0"]) == {"p0": "Answer: 7"}  # type: ignore[arg-type]
    assert asked == [
        ("paths", "model"),
        ("samples", "sampler"),
        ("paths", "server slm"),
        ("paths", "llm"),
        ("paths", "llm"),
    ]
