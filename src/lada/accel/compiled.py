"""``runtime.accel: compile``: the library path, torch.compile behind the same seam.

* Training and scoring (:func:`compiled_forward`, entered by :func:`lada.accel.training`): the
  model's ``forward`` runs through ``torch.compile`` (inductor, CPU included) with dynamic
  shapes, so batches of another length or size reuse the compiled graph instead of compiling
  again, and as one full graph, so that no part of the forward falls back to eager without
  saying so. Everything else is plain PyTorch, as with ``accel: off``: no cast copies, and
  LoRA dropout is torch's own (inside the compiled graph, so with inductor's random stream).
* Generation (:class:`CompiledGenerator`, from :func:`lada.accel.generator`): transformers'
  ``model.generate`` with its static KV cache (``cache_implementation="static"``) and its
  compiled decode-step forward (``CompileConfig``, dynamic shapes), LoRA merged for the call,
  under the model's autocast; greedy (``do_sample=False``) for paths, pure temperature sampling
  (no top-k, no top-p) from a seeded stream for samples. Paths are cut after their answer
  line afterwards (``model.generate`` has no answer stop, so each row runs to EOS or
  ``max_new_tokens``).

Compilation happens on first use and again for shapes or modes not seen yet (train and eval,
with and without gradients), so it pays only on long runs. A failure to compile, a graph
break, a recompile limit hit, or transformers declining to compile is a :class:`CompileError`
naming the model and the way out (``runtime.accel: off``, ``torch`` or ``native``), never a
quiet switch to another path.

The compiled code computes the same functions with other kernels and fusions, so its logits
differ from the eager forward's by float round-off: greedy paths can differ from the eager
ones (and from LaDa's decode loop, ``accel: off``/``torch``/``native``) where two tokens nearly
tie. Runs record ``accel: compile`` in ``summary.json``'s ``runtime`` and in ``log.txt``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# torch.compile's settings for training and scoring forwards
TRAINING = {"backend": "inductor", "dynamic": True, "fullgraph": True}
# dynamo's limit on compiled variants per function, raised from its default (8) because one
# process can hold several models of one class (server and clients), each in train and eval
# mode; hitting it is an error (not eager code, dynamo's default)
RECOMPILE_LIMIT = 64


class CompileError(RuntimeError):
    """torch.compile could not run what ``runtime.accel: compile`` asked of it."""


def _what(model: nn.Module) -> str:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = getattr(getattr(base, "config", None), "_name_or_path", "") or ""
    return f"{type(base).__name__}{f' ({name})' if name else ''}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _advice(model: nn.Module, where: str, err: BaseException) -> CompileError:
    """The error a user sees: where, which model, dynamo's error and its root cause."""
    root = err
    while root.__cause__ is not None or getattr(root, "inner_exception", None) is not None:
        root = getattr(root, "inner_exception", None) or root.__cause__  # type: ignore[assignment]
    why = _first_line(err) + (f" (caused by {_first_line(root)})" if root is not err else "")
    return CompileError(
        f"runtime.accel: compile: torch.compile failed in {where} of {_what(model)}: {why}; "
        "runtime.accel off, torch or native runs without torch.compile"
    )


@contextlib.contextmanager
def strict_dynamo() -> Iterator[None]:
    """Dynamo settings for a compiled call: hitting the recompile limit raises instead of
    running eager code; :data:`RECOMPILE_LIMIT` variants per function."""
    import torch._dynamo

    with torch._dynamo.config.patch(
        fail_on_recompile_limit_hit=True, recompile_limit=RECOMPILE_LIMIT
    ):
        yield


def _errors() -> tuple[type[BaseException], ...]:
    from torch._dynamo import exc

    return (exc.TorchDynamoException, exc.FailOnRecompileLimitHit)


def _compiled(model: nn.Module, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a compiled forward) under :func:`strict_dynamo`, with its compile errors as
    :class:`CompileError`."""
    errors = _errors()

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            with strict_dynamo():
                return fn(*args, **kwargs)
        except errors as err:
            raise _advice(model, "the forward pass", err) from err

    call.lada_compiled = True  # type: ignore[attr-defined]
    return call


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model``'s forward currently runs through :func:`compiled_forward`."""
    return bool(getattr(model.__dict__.get("forward"), "lada_compiled", False))


@contextlib.contextmanager
def compiled_forward(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with its ``forward`` in ``torch.compile`` (:data:`TRAINING`) for the block,
    its own forward again after it. Calls in the block (``model(...)``) compile on first use;
    another block on the same model class reuses dynamo's compiled code where its guards
    hold. Nested blocks share the outer one's compiled forward."""
    if is_compiled(model):
        yield model
        return
    model.forward = _compiled(model, torch.compile(model.forward, **TRAINING))
    try:
        yield model
    finally:
        del model.forward


# transformers' compile settings for the decode step: inductor on every device (it compiles
# on accelerators only otherwise), dynamic shapes (batches of other sizes and cache lengths
# reuse the graph), no CUDA graphs ("default" mode); one object, so that transformers keeps
# its compiled call between generate calls
_GENERATE_COMPILE: Any = None


def generate_compile_config() -> Any:
    """The ``transformers.CompileConfig`` of compiled generation."""
    global _GENERATE_COMPILE
    if _GENERATE_COMPILE is None:
        from transformers import CompileConfig

        config = CompileConfig(fullgraph=False, dynamic=True, mode="default")
        config._compile_all_devices = True
        _GENERATE_COMPILE = config
    return _GENERATE_COMPILE


def _generating_model(model: nn.Module) -> nn.Module:
    """The transformers model whose ``generate`` runs (a peft model's base model)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def compiled_generate_paths(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    temperature: float = 0.0,
    seed: int = 0,
    on_done: Callable[[int], object] | None = None,
) -> list[str]:
    """``model.generate`` with transformers' static KV cache and its compiled forward, in the
    length-sorted batches of :func:`lada.eval.generate.hf_generate_paths` (no answer stop).
    Greedy with ``temperature`` 0; else tokens drawn from softmax(logits / temperature) (no
    top-k or top-p) from a stream seeded with ``seed`` (the caller's RNG state is restored).
    Raises :class:`CompileError` where transformers or torch.compile do not compile."""
    from lada.eval.generate import hf_generate_paths

    target = _generating_model(model)
    if hasattr(target, "_compiled_call"):  # so that the check below sees this call's compile
        del target._compiled_call
    options: dict[str, Any] = {
        "cache_implementation": "static",
        "compile_config": generate_compile_config(),
    }
    if temperature > 0:
        options.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    device = next(model.parameters()).device
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with strict_dynamo(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            texts = hf_generate_paths(
                model,
                tokenizer,
                prompts,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                on_done=on_done,
                **options,
            )
    except _errors() as err:
        raise _advice(model, "generation", err) from err
    if prompts and max_new_tokens > 1 and not hasattr(target, "_compiled_call"):
        raise CompileError(
            f"runtime.accel: compile: transformers did not compile the decode step of "
            f"{_what(model)} (its generate declined: see its log line above); runtime.accel "
            "off, torch or native generates without torch.compile"
        )
    return texts


@dataclass
class CompiledGenerator:
    """:class:`lada.accel.generation.Generator` on transformers' compiled ``model.generate``
    (:func:`compiled_generate_paths`), with LoRA merged for the call and the model's
    autocast around it. Greedy stays greedy; paths can differ from the eager decode loop's
    where two tokens nearly tie (see the module's docstring)."""

    model: Any
    tokenizer: Any
    engine: str = "compile"

    @contextlib.contextmanager
    def _prepared(self) -> Iterator[None]:
        from lada.accel.precision import autocast_for
        from lada.eval.generate import merged_adapters

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), merged_adapters(self.model), autocast_for(self.model):
                yield
        finally:
            self.model.train(was_training)

    def paths(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 160,
        batch_size: int = 64,
        stop_at_answer: bool = True,
        desc: str = "generate",
    ) -> list[str]:
        from lada.eval.generate import _cut_after_answer
        from lada.utils.progress import progress_bar

        if not prompts:
            return []
        with progress_bar(desc, total=len(prompts)) as bar, self._prepared():
            texts = compiled_generate_paths(
                self.model,
                self.tokenizer,
                prompts,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                on_done=bar.advance,
            )
        return [_cut_after_answer(t) for t in texts] if stop_at_answer else texts

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
        from lada.eval.generate import _cut_after_answer

        if not prompts or samples <= 0:
            return [[] for _ in prompts]
        rows = [p for p in prompts for _ in range(samples)]
        with self._prepared():
            texts = compiled_generate_paths(
                self.model,
                self.tokenizer,
                rows,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                temperature=temperature,
                seed=seed,
            )
        cut = [_cut_after_answer(t) for t in texts]
        return [cut[i * samples : (i + 1) * samples] for i in range(len(prompts))]


__all__ = [
    "CompileError",
    "CompiledGenerator",
    "compiled_forward",
    "compiled_generate_paths",
    "generate_compile_config",
    "is_compiled",
]
