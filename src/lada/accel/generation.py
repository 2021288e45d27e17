"""The generation seam: :func:`generator` gives the object every caller generates through.

A generator turns prompts into reasoning paths for one model (with its LoRA adapters as they
are now). :class:`LocalGenerator` runs LaDa's decode loop in this process
(:mod:`lada.eval.generate`: the lean decoder or the model's own forward, per
``runtime.generator``); :class:`lada.accel.compiled.CompiledGenerator` runs transformers'
compiled ``model.generate`` (``runtime.accel: compile``). Every generation of a run (evaluation,
reasoning paths, the oracle's, sampled paths) goes through :func:`generator`, so the
``runtime:`` section governs all of it. Another engine fits behind the same two methods: a GPU
server such as vLLM with multi-LoRA would keep the base weights loaded once, receive each
role's current adapters (``peft``'s ``get_peft_model_state_dict``) as a LoRA request per call,
and return the decoded texts; :func:`generator` would pick it from ``runtime.generator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lada.accel.decoders import choose_decoder
from lada.accel.switch import compile_enabled, current


class Generator(Protocol):
    """Greedy paths and sampled paths of one model; each path is cut after its answer line."""

    engine: str  # what runs the forward passes (recorded in the run's runtime record)

    def paths(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 160,
        batch_size: int = 64,
        stop_at_answer: bool = True,
        desc: str = "generate",
    ) -> list[str]: ...

    def samples(
        self,
        prompts: Sequence[str],
        *,
        samples: int,
        temperature: float,
        seed: int,
        max_new_tokens: int = 160,
        batch_size: int = 64,
    ) -> list[list[str]]: ...


@dataclass
class LocalGenerator:
    """LaDa's decode loop in this process on ``engine`` (``lean`` or ``hf``)."""

    model: Any
    tokenizer: Any
    engine: str

    def paths(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 160,
        batch_size: int = 64,
        stop_at_answer: bool = True,
        desc: str = "generate",
    ) -> list[str]:
        from lada.eval.generate import generate_paths

        return generate_paths(
            self.model,
            self.tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            stop_at_answer=stop_at_answer,
            desc=desc,
            decoder=self.engine,
        )

    def samples(
        self,
        prompts: Sequence[str],
        *,
        samples: int,
        temperature: float,
        seed: int,
        max_new_tokens: int = 160,
        batch_size: int = 64,
    ) -> list[list[str]]:
        from lada.eval.generate import sample_paths

        return sample_paths(
            self.model,
            self.tokenizer,
            prompts,
            samples=samples,
            temperature=temperature,
            seed=seed,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            decoder=self.engine,
        )


def generator(model: Any, tokenizer: Any) -> Generator:
    """The generator for ``model`` under the run's ``runtime`` setting: with ``accel:
    compile``, transformers' compiled ``model.generate``
    (:class:`lada.accel.compiled.CompiledGenerator`; ``generator: lean`` is an error there);
    otherwise LaDa's decode loop on the engine :func:`choose_decoder` picks."""
    engine = choose_decoder(model, current().generator)
    if compile_enabled():
        from lada.accel.compiled import CompiledGenerator

        return CompiledGenerator(model, tokenizer)
    return LocalGenerator(model, tokenizer, engine)
