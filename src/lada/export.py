"""`lada export`: a run's model at a round as a folder that transformers (or peft) loads.

A run keeps only what it trains (``save_trainable``): each client's SLM in
``RUN/clients/client_K/round_NNN.safetensors`` and the server's LLM in
``RUN/checkpoints/round_NNN/llm.safetensors``, all weights or LoRA adapters only. Such a file
is the model's *state*, not a model folder. Here the role's base model is loaded exactly as the
run loaded it (zoo model from ``$LADA_CACHE``, local folder or hub id; LoRA applied as
configured), the round's state is put in, and the result is written with ``save_pretrained``
plus its tokenizer:

* full fine-tuning: ``AutoModelForCausalLM.from_pretrained(DIR)`` loads it;
* LoRA: an adapter folder for ``PeftModel.from_pretrained(base, DIR)`` (its
  ``base_model_name_or_path`` names the base), or with ``merge`` a plain model folder.

The folder also says how to prompt it. Its tokenizer carries a chat template: the one the run
trained with (a chat model run with ``chat_template: auto``), or else one that writes the
run's plain prompt (``[bos]`` + the question + a newline; the model answers with its steps and
an ``Answer:`` line). ``README.md`` is a model card with the prompt format, an example question
the role learned from, what this export answers to it, and a snippet that asks it
(:func:`snippet`; ``lada export`` prints it).

``lada eval --model`` accepts a run's checkpoint paths directly (:func:`parse_run_checkpoint`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

CLIENT_FILE = re.compile(r"round_(\d+)\.safetensors")
ROUND_DIR = re.compile(r"round_(\d+)")


class ExportError(FileNotFoundError):
    """A run checkpoint that cannot be found or exported (the CLI prints it, exit 2)."""


def parse_run_checkpoint(path: str | Path) -> tuple[Path, int, int | None] | None:
    """``(run_dir, round, client)`` (client None: the server) when ``path`` is a run's
    checkpoint: ``RUN/clients/client_K/round_NNN.safetensors``, ``RUN/checkpoints/round_NNN``
    or ``RUN/checkpoints/round_NNN/llm.safetensors``; None for anything else."""
    p = Path(path)
    if p.name == "llm.safetensors":
        p = p.parent
    m = CLIENT_FILE.fullmatch(p.name)
    if m and re.fullmatch(r"client_\d+", p.parent.name) and p.parent.parent.name == "clients":
        run_dir, client = p.parent.parent.parent, int(p.parent.name.split("_")[1])
    elif ROUND_DIR.fullmatch(p.name) and p.parent.name == "checkpoints":
        run_dir, client = p.parent.parent, None
        m = ROUND_DIR.fullmatch(p.name)
    else:
        return None
    if not (run_dir / "config.yaml").is_file():
        return None
    assert m is not None
    return run_dir, int(m.group(1)), client


def _world_config(cfg: Any, run_dir: Path) -> Any:
    """The synthetic world the run's zoo models were prepared for (from its split manifest)."""
    if cfg.data.kind != "synthetic":
        return None
    manifest = Path(cfg.data.dir or run_dir / "data") / "manifest.json"
    if manifest.is_file():
        from lada.data.split import SplitConfig

        return SplitConfig(**json.loads(manifest.read_text())["settings"]).synthetic()
    from lada.runner.setup import world_config

    return world_config(cfg)


def _last_complete_round(run_dir: Path) -> int:
    state = run_dir / "state.json"
    return int(json.loads(state.read_text())["last_complete_round"]) if state.is_file() else -1


def checkpoint_file(run_dir: Path, round_idx: int, client: int | None) -> tuple[Path | None, str]:
    """The state file that holds the role's model at the end of ``round_idx`` (None: the base
    model), and a note on how it was found."""
    if round_idx == 0:
        return None, "round 0: the base model (before training)"
    if client is None:
        f = run_dir / "checkpoints" / f"round_{round_idx:03d}" / "llm.safetensors"
        if not f.is_file():
            kept = sorted(p.name for p in (run_dir / "checkpoints").glob("round_*"))
            raise ExportError(
                f"{f}: no server checkpoint of round {round_idx} (kept: {', '.join(kept) or 'none'}"
                "; keep_checkpoints=last keeps only the last round)"
            )
        return f, f"server checkpoint of round {round_idx}"
    folder = run_dir / "clients" / f"client_{client}"
    saved = sorted(
        int(m.group(1))
        for p in folder.glob("round_*.safetensors")
        if (m := CLIENT_FILE.fullmatch(p.name))
    )
    before = [r for r in saved if r <= round_idx]
    if not before:
        return None, f"client {client} saved no round up to {round_idx}: its base model"
    f = folder / f"round_{before[-1]:03d}.safetensors"
    if before[-1] != round_idx:
        return f, f"client {client} missed round {round_idx}: its state of round {before[-1]}"
    return f, f"client {client}'s state of round {round_idx}"


def load_run_checkpoint(run_dir: str | Path, round_idx: int, client: int | None) -> tuple[Any, Any]:
    """``(model, tokenizer)``: the role's model as it was at the end of ``round_idx``."""
    model, tok, _ = load_run_model(Path(run_dir), round_idx, client)
    return model, tok


def load_run_model(
    run_dir: Path, round_idx: int, client: int | None
) -> tuple[Any, Any, dict[str, Any]]:
    """The model, its tokenizer, and where they came from (for ``lada_export.json``)."""
    from lada.config import load_config

    if not (run_dir / "config.yaml").is_file():
        raise ExportError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    if client is not None and not 0 <= client < len(cfg.clients):
        raise ExportError(f"{run_dir}: no client {client} (clients 0..{len(cfg.clients) - 1})")
    last = _last_complete_round(run_dir)
    if not 0 <= round_idx <= max(last, 0):
        raise ExportError(
            f"{run_dir}: no round {round_idx} (complete rounds: 0..{last})"
            if last >= 0
            else f"{run_dir}: no complete round yet"
        )
    ckpt, note = checkpoint_file(run_dir, round_idx, client)
    mc = cfg.server if client is None else cfg.clients[client]
    from lada.runner.setup import model_loader
    from lada.utils.model_state import load_trainable

    role = "server" if client is None else f"client_{client}"
    model, tok = model_loader(mc, cfg, _world_config(cfg, run_dir), role=role)()
    if ckpt is not None:
        load_trainable(model, ckpt)
    info = {
        "run_dir": str(run_dir.resolve()),
        "round": round_idx,
        "role": "server" if client is None else f"client {client}",
        "model": mc.model,
        "checkpoint": str(ckpt) if ckpt else None,
        "note": note,
        "lora": mc.lora is not None,
    }
    return model.eval(), tok, info


def export(
    run_dir: str | Path,
    round_idx: int,
    client: int | None,
    out: str | Path,
    merge: bool = False,
) -> dict[str, Any]:
    """Write the role's model at ``round_idx`` to ``out`` (see the module doc); returns what
    was written (also in ``out/lada_export.json``)."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty: choose another --out")
    model, tok, info = load_run_model(run_dir, round_idx, client)
    is_peft = hasattr(model, "peft_config")
    if merge and not is_peft:
        raise ExportError(f"--merge: {info['role']} trains all weights (no LoRA adapters)")
    if is_peft and merge:
        model = model.merge_and_unload()
    info["format"] = (
        "peft adapter (PeftModel.from_pretrained)"
        if is_peft and not merge
        else "transformers model (AutoModelForCausalLM.from_pretrained)"
    )
    info["prompt"] = set_prompt_template(tok)
    example = _example(run_dir, client)
    if example is not None:
        info["example"] = {
            "question": example.prompt().rstrip("\n"),
            "answer": example.answer,
            "reply": _reply(model, tok, example.prompt().rstrip("\n")),
        }
    # a fresh folder of its own (never a predictable name a link could be planted at)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "lada_export.json").write_text(json.dumps(info, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(info, out))
        os.chmod(tmp, 0o755)  # mkdtemp's folder is private; an exported model is to be shared
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    tmp.replace(out)
    info["out"] = str(out)
    return info


# ---- how to prompt an export ----------------------------------------------------------------

# the run's plain prompt as a chat template: [bos] + each user turn's text + "\n"; the model
# then writes its reasoning steps, one per line, and "Answer: X" (lada.data.sample)
PLAIN_PROMPT_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ message['content'] | trim }}\n"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}"
)


def set_prompt_template(tok: Any) -> str:
    """Give ``tok`` the chat template that reproduces how the run prompted the model; returns
    which: ``chat`` (the model's own template, as the run used it) or ``plain``."""
    from lada.train.batching import use_chat_template

    if use_chat_template(tok):
        return "chat"
    tok.chat_template = PLAIN_PROMPT_TEMPLATE
    return "plain"


def _example(run_dir: Path, client: int | None) -> Any:
    """A question the role learned from: client K's first training sample, or the server's
    first public one (None when the run's data cannot be read back)."""
    from lada.config import load_config
    from lada.runner.setup import load_run_data

    cfg = load_config(run_dir / "config.yaml")
    split = Path(cfg.data.dir) if cfg.data.dir else run_dir / "data"
    if cfg.data.kind == "synthetic" and not (split / "manifest.json").is_file():
        return None  # never made again here: an export writes nothing into the run
    try:
        data = load_run_data(cfg, run_dir, record=False)
    except (OSError, ValueError) as e:  # the card then goes without an example
        print(f"lada export: no example question ({e})")
        return None
    samples = data.public if client is None else data.train[client]
    return samples[0] if samples else None


def _reply(model: Any, tok: Any, question: str, max_new_tokens: int = 160) -> str:
    """What the model answers to ``question`` prompted through ``tok``'s chat template."""
    import torch

    x = tok.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt"
    )
    with torch.no_grad():
        ids = model.generate(
            **x.to(next(model.parameters()).device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
    return tok.decode(ids[0, x["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def snippet(out: str | Path, question: str) -> str:
    """Three lines of Python that load the export in ``out`` and ask it ``question``."""
    q = json.dumps(question)
    return (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"tok, model = AutoTokenizer.from_pretrained({str(out)!r}), "
        f"AutoModelForCausalLM.from_pretrained({str(out)!r})\n"
        f"x = tok.apply_chat_template([{{'role': 'user', 'content': {q}}}], "
        "add_generation_prompt=True, return_tensors='pt'); "
        "print(tok.decode(model.generate(**x, max_new_tokens=160)[0, x['input_ids'].shape[1]:], "
        "skip_special_tokens=True))\n"
    )


def model_card(info: dict[str, Any], out: Path) -> str:
    """README.md of an export: what it is, how to prompt it, an example, a snippet."""
    ex = info.get("example")
    question = ex["question"] if ex else "What is 2 + 3?"
    lines = [
        f"# {info['model']}: {info['role']} of a LaDa run, round {info['round']}",
        "",
        f"Exported by `lada export` from `{info['run_dir']}` ({info['note']}).",
        f"Format: {info['format']}.",
        "",
        "## Prompt format",
        "",
    ]
    if info["prompt"] == "chat":
        lines += [
            "The run prompted this model through its own chat template (in the tokenizer): "
            "one user turn holding the question, then the generation prompt.",
        ]
    else:
        lines += [
            "The run prompted this model with plain text: the beginning-of-sequence token, the "
            "question, **and a newline** (without it the model goes astray). Multiple-choice "
            "questions add one line of options: `(A) first (B) second ...`. The tokenizer's "
            "chat template writes exactly this from one user turn, so "
            "`tok.apply_chat_template(messages, add_generation_prompt=True)` prompts it right.",
        ]
    lines += [
        "",
        "The model answers with its reasoning steps, one per line, and a last line `Answer: X`.",
        "",
    ]
    if ex:
        lines += [
            "## Example",
            "",
            "A question this model learned from (its training data in the run):",
            "",
            "```text",
            ex["question"],
            "```",
            "",
            f"Expected answer: `{ex['answer']}`. This export replies (greedy):",
            "",
            "```text",
            ex["reply"] or "(nothing: it ends its reply at once)",
            "```",
            "",
        ]
    lines += [
        "## Ask it",
        "",
        "```python",
        snippet(out, question).rstrip("\n"),
        "```",
        "",
    ]
    if info.get("lora") and "peft" in info["format"]:
        lines += [
            "This folder holds LoRA adapters: `AutoModelForCausalLM.from_pretrained` loads them "
            "onto the base named in `adapter_config.json` when `peft` is installed "
            "(`lada export --merge` writes a plain model instead).",
            "",
        ]
    return "\n".join(lines)
