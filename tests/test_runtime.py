"""The runtime switch (lada.accel): one config section, old keys named, what ran recorded."""

from __future__ import annotations

import pytest
import torch

from lada.accel import record, record_line, using
from lada.accel.precision import choose_precision
from lada.config import ConfigError, load_config


def test_runtime_section_is_read_and_checked():
    cfg = load_config(None, ["runtime.accel=torch", "runtime.generator=hf"])
    assert (cfg.runtime.accel, cfg.runtime.generator) == ("torch", "hf")
    with pytest.raises(ConfigError, match="runtime.accel"):
        load_config(None, ["runtime.accel=fast"])


def test_a_retired_key_names_its_replacement():
    with pytest.raises(ConfigError, match="'server.decoder' was replaced by 'runtime.generator'"):
        load_config(None, ["server.decoder=lean"])
    with pytest.raises(ConfigError, match="'clients.1.decoder' was replaced by 'runtime.gen"):
        load_config(None, ["clients.1.decoder=hf"])


def test_the_record_says_what_ran():
    with using(accel="torch", generator="hf"):
        rec = record()
        line = record_line(rec)
    assert (rec["accel"], rec["generator"]) == ("torch", "hf")
    assert all(v == "not used (runtime.accel: torch)" for v in rec["kernels"].values())
    assert rec["torch"] == torch.__version__
    assert rec["cpu_capability"] == str(torch.backends.cpu.get_cpu_capability())
    assert line.startswith("runtime: accel torch") and "generator hf" in line
    assert f"torch {torch.__version__}" in line


def test_bf16_is_chosen_automatically_only_where_the_cpu_has_it(monkeypatch):
    from lada.accel import precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert choose_precision("auto", cpu, 10**9).autocast is None  # AVX2-only: fp32
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert choose_precision("auto", cpu, 10**9).autocast == torch.bfloat16
    assert choose_precision("auto", cpu, 10**6).autocast is None  # tiny models stay fp32


def test_the_default_dtype_is_automatic():
    cfg = load_config(None, [])
    assert {m.dtype for m in [cfg.server, *cfg.clients]} == {"auto"}


@pytest.mark.parametrize(("isa", "native"), [("AVX2", False), ("AVX512_CORE", False)])
def test_an_onednn_isa_limit_below_bf16_means_no_native_bf16(monkeypatch, isa, native):
    from lada.accel import precision

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    precision.cpu_has_native_bf16.cache_clear()
    try:
        assert precision.cpu_has_native_bf16() is native
        assert choose_precision("auto", torch.device("cpu"), 10**9).autocast is None
    finally:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
        precision.cpu_has_native_bf16.cache_clear()


def test_accel_off_trains_the_model_as_it_is(tmp_path):
    from lada.accel import training
    from lada.accel.lora_dropout import CpuDropout
    from lada.models import build_model, build_tokenizer
    from lada.models.loading import LoraSettings, load_causal_lm
    from lada.models.zoo import ModelSpec

    tok = build_tokenizer(["Double 3\nAnswer: 6"] * 3, vocab_size=120)
    build_model(ModelSpec("t", "llama", 32, 1, 2, 2, 64), tok, seed=0).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model, _ = load_causal_lm(tmp_path, lora=LoraSettings(r=2, alpha=4, dropout=0.1), device="cpu")

    def drops() -> list[type]:
        return [type(m) for m in model.modules() if isinstance(m, CpuDropout | torch.nn.Dropout)]

    with training(model):
        assert CpuDropout in drops()  # the speed path: 16-bit masks on CPU
    with using(accel="off"), training(model):
        assert CpuDropout not in drops() and torch.nn.Dropout in drops()  # torch's own
