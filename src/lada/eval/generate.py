"""The one generator for evaluation and path generation: batched greedy decoding.

Prompts are encoded exactly as in training (:func:`lada.train.batching.encode_prompts`, chat
template included when the model uses one) and left-padded by hand, so the tokenizer's
``padding_side`` is never touched. :func:`greedy_decode` is our own loop rather than
``model.generate`` (measured faster: benchmarks/real_model_speed.py); its forward passes run
on :class:`lada.accel.lean_decoder.LeanDecoder` where the model allows it, else on the
model's own forward (:func:`choose_decoder`). In fp32 its output equals greedy
``generate``'s token for token (tests/test_eval.py, tests/test_lean_decoder.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from lada.accel.decoders import choose_decoder
from lada.accel.precision import autocast_dtype, autocast_for
from lada.accel.switch import current, speedups_allowed
from lada.data.sample import ANSWER_PREFIX
from lada.train.batching import encode_prompts, left_pad
from lada.utils.progress import progress_bar

log = logging.getLogger(__name__)


@torch.no_grad()
def generate_paths(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 160,
    batch_size: int = 64,
    stop_at_answer: bool = True,
    desc: str = "generate",
    decoder: str | None = None,
    pack: bool | None = None,
    kernels: bool | None = None,
) -> list[str]:
    """Greedy continuations of ``prompts`` (in input order), special tokens stripped.

    With ``stop_at_answer`` a row stops after its first complete ``Answer: X`` line (the
    continuation then ends with that line, without the newline). Runs :func:`greedy_decode`
    (LaDa's own decode loop: length-sorted batches, a preallocated KV cache, finished rows
    dropped) with a progress bar labelled ``desc``, on the lean decoder where the model allows
    it (``decoder``: ``auto`` | ``lean`` | ``hf``, default the run's ``runtime.generator``;
    :func:`lada.accel.decoders.choose_decoder`), else on the model's own forward with
    the weights of :func:`decode_weights`. ``pack``: the lean decoder's bf16 weights packed
    for oneDNN (:mod:`lada.accel.packed_linear`; None: where it runs). ``kernels``: the lean
    decoder's decode steps run its C kernels (:mod:`lada.accel.decode_kernels`; None: where
    they build and run).
    """
    if not prompts:
        return []
    encoded = encode_prompts(tokenizer, prompts)
    stop = _AnswerStops(tokenizer) if stop_at_answer else None
    with (
        progress_bar(desc, total=len(prompts)) as bar,
        _decoding(model, decoder) as (engine, autocast),
    ):
        ids = greedy_decode(
            model,
            encoded,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            eos_ids=_eos_ids(model, tokenizer),
            pad_id=_pad_id(tokenizer),
            stop=stop,
            on_done=bar.advance,
            autocast=autocast,
            decoder=engine,
            pack=pack,
            kernels=kernels,
        )
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [_cut_after_answer(t) if stop_at_answer else t for t in texts]


@contextlib.contextmanager
def _decoding(model: PreTrainedModel, decoder: str | None) -> Iterator[tuple[str, bool]]:
    """``(engine, autocast)`` for :func:`greedy_decode`: the lean decoder makes its own weight
    copies; the model's own forward runs with :func:`decode_weights`."""
    engine = choose_decoder(model, decoder or current().generator)
    if engine == "lean":
        yield engine, False
        return
    if not speedups_allowed():  # runtime.accel off: the model as it is, autocast in the prefill
        with merged_adapters(model):
            yield engine, True
        return
    with decode_weights(model) as autocast:
        yield engine, autocast


@contextlib.contextmanager
def decode_weights(model: PreTrainedModel) -> Iterator[bool]:
    """The weights a generation call runs with; yields whether forward passes should still
    run under the model's autocast (:func:`lada.accel.precision.autocast_for`).

    A model that autocasts to a lower dtype (bf16 on a CPU with native bf16) generates with a
    copy of its linear layers in that dtype, LoRA folded in, made once for the call
    (:func:`lada.accel.cast_weights.cast_linear_copy`: no autocast, so no re-cast of the
    weights at every step); other models run with LoRA merged (:func:`merged_adapters`).
    """
    dtype = autocast_dtype(model)
    if dtype is None:
        with merged_adapters(model):
            yield False
        return
    from lada.accel.cast_weights import cast_linear_copy

    with cast_linear_copy(model, dtype):
        yield False


@contextlib.contextmanager
def merged_adapters(model: PreTrainedModel) -> Iterator[None]:
    """A peft LoRA model with its adapters merged into the base weights for the duration
    (``merge_adapter`` / ``unmerge_adapter``): generation then runs plain linear layers, not
    base + low-rank side paths. Unmerging restores the base weights up to float round-off
    (about 1e-7 relative in fp32). Other models pass through untouched."""
    if not (hasattr(model, "merge_adapter") and getattr(model, "peft_config", None)):
        yield
        return
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else tokenizer.eos_token_id


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    ids.update([extra] if isinstance(extra, int) else list(extra or []))
    return ids


class _AnswerStops:
    """Per-row ``Answer: X`` + newline detection on decoded token pieces (cached per id)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.pieces: dict[int, str] = {}
        self.tails: dict[int, str] = {}
        self.after: dict[int, str] = {}

    def _piece(self, token_id: int) -> str:
        if token_id not in self.pieces:
            self.pieces[token_id] = self.tokenizer.decode([token_id], skip_special_tokens=True)
        return self.pieces[token_id]

    def feed(self, row: int, token_ids: Sequence[int]) -> bool:
        """Add ``row``'s new tokens; True once its answer line is complete."""
        text = "".join(self._piece(t) for t in token_ids)
        if row not in self.after:
            tail = self.tails.get(row, "") + text
            pos = tail.rfind(ANSWER_PREFIX)
            if pos < 0:
                self.tails[row] = tail[-len(ANSWER_PREFIX) :]
                return False
            self.after[row] = tail[pos + len(ANSWER_PREFIX) :]
        else:
            self.after[row] += text
        return "\n" in self.after[row].lstrip()


class _ModelSteps:
    """Decode steps through the model's own forward with a preallocated cache (the interface of
    :class:`lada.accel.lean_decoder.LeanDecoder`: ``prefill``, ``step``, ``keep``)."""

    def __init__(self, model: PreTrainedModel, autocast: bool) -> None:
        self.model = model
        self.autocast = autocast
        self.cache_kw = _cache_keyword(model)

    def prefill(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, capacity: int
    ) -> torch.Tensor:
        from lada.accel.cast_weights import preallocated_cache

        self.mask = mask
        self.cache = preallocated_cache(self.model, capacity)
        with autocast_for(self.model) if self.autocast else contextlib.nullcontext():
            return self._forward(input_ids, positions)

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
        # no autocast in decode steps: it would re-cast every fp32 weight each step
        # (with a cast copy of the linear layers, decode_weights, there is none to do)
        return self._forward(tokens[:, None], positions[:, None])

    def keep(self, rows: torch.Tensor) -> None:
        self.mask = self.mask[rows]
        for layer in self.cache.layers:
            layer.batch_select_indices(rows)

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.model(
            input_ids=input_ids,
            attention_mask=self.mask,
            position_ids=positions,
            **{self.cache_kw: self.cache},
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]


@torch.no_grad()
def greedy_decode(
    model: PreTrainedModel,
    encoded: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    eos_ids: set[int],
    pad_id: int,
    stop: _AnswerStops | None = None,
    on_done: Callable[[int], object] | None = None,
    check_every: int | None = None,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    autocast: bool = True,
    decoder: str = "auto",
    pack: bool | None = None,
    kernels: bool | None = None,
) -> list[list[int]]:
    """Greedy new token ids for every prompt (input order), EOS excluded; with
    ``temperature`` > 0, tokens sampled from softmax(logits / temperature) instead (pure
    temperature sampling, drawn with ``generator``; lada.eval.consistency).

    Prompts are sorted by length (longest first) and cut into batches (little left padding);
    each batch is prefilled once and decoded with a KV cache, one token per step, computing
    logits for the last position only. A row that is done (EOS, its answer line, or
    ``max_new_tokens``) leaves the batch: its cache rows are dropped, so long stragglers do not
    carry the whole batch. Finished rows are checked every ``check_every`` steps (default: 1
    on CPU, 8 on GPU: the check is the loop's only host synchronisation; tokens produced past a
    row's end are cut off, so the output does not depend on it). The KV cache of a batch is
    preallocated for its prompt width + ``max_new_tokens`` (no copy of the cache per step).
    With the lean decoder, the start all prompts of a batch share (a chat template's system
    turn) is computed once for the batch.

    ``decoder`` (:func:`choose_decoder`): ``lean`` runs
    :class:`lada.accel.lean_decoder.LeanDecoder` (fused projections, LoRA folded in, in the
    model's autocast dtype); ``hf`` the model's own forward, where ``autocast`` says whether
    the prefill runs under the model's autocast (off when the caller computes from a cast copy
    of the weights, :func:`decode_weights`). ``pack``: whether the lean decoder packs its bf16
    weights for oneDNN once per call (:mod:`lada.accel.packed_linear`; None: where it runs).
    ``kernels``: whether its decode steps run the C kernels (:mod:`lada.accel.decode_kernels`;
    None: where they build and run).
    """
    device = next(model.parameters()).device
    if check_every is None:
        check_every = 1 if device.type == "cpu" else 8
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    out: list[list[int]] = [[] for _ in encoded]
    from lada.accel.lean_decoder import LeanDecoder

    # "lean" needs no check here: LeanDecoder refuses a model it cannot run, with the reason
    engine = decoder if decoder in ("lean", "hf") else choose_decoder(model, decoder)
    if engine == "lean":
        steps: LeanDecoder | _ModelSteps = LeanDecoder(
            model, autocast_dtype(model), pack=pack, kernels=kernels
        )
    else:
        steps = _ModelSteps(model, autocast)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            prompts = [encoded[i] for i in idx]
            shared = _shared_prefix(prompts) if isinstance(steps, LeanDecoder) else 0
            batch = left_pad([ids[shared:] for ids in prompts], pad_id)
            mask = batch["attention_mask"].to(device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0) + shared
            logits = steps.prefill(
                batch["input_ids"].to(device),
                mask,
                positions,
                shared + mask.shape[1] + max_new_tokens,
                **({"prefix": torch.tensor(prompts[0][:shared])} if shared else {}),
            )
            nxt = _next_token(logits, temperature, generator)
            rows = list(idx)  # prompt index of each live batch row
            pos = positions[:, -1]
            pending: list[torch.Tensor] = []  # tokens since the last check, [live rows] each
            for step in range(max_new_tokens):
                pending.append(nxt)
                last = step == max_new_tokens - 1
                if (step + 1) % check_every == 0 or last:
                    block = torch.stack(pending, 1).tolist()
                    pending = []
                    keep = []
                    for r, (i, toks) in enumerate(zip(rows, block, strict=True)):
                        if _extend(out[i], toks, eos_ids, stop, i) or last:
                            if on_done is not None:
                                on_done(1)
                        else:
                            keep.append(r)
                    if not keep:
                        break
                    if len(keep) < len(rows):
                        sel = torch.tensor(keep, device=device)
                        rows = [rows[r] for r in keep]
                        nxt, pos = nxt[sel], pos[sel]
                        steps.keep(sel)
                pos = pos + 1
                nxt = _next_token(steps.step(nxt, pos), temperature, generator)
    finally:
        model.train(was_training)
    return out


def _shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all ``prompts`` share (each keeps at least one of its own);
    0 for a single prompt."""
    if len(prompts) < 2:
        return 0
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def _next_token(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None
) -> torch.Tensor:
    """The argmax, or with ``temperature`` > 0 a draw from softmax(logits / temperature)."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def sample_paths(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    samples: int,
    temperature: float,
    seed: int,
    max_new_tokens: int = 160,
    batch_size: int = 64,
    decoder: str | None = None,
) -> list[list[str]]:
    """``samples`` paths per prompt drawn at ``temperature`` (each stopped after its answer
    line, as :func:`generate_paths`), by the same decode loop and ``decoder``; ``seed`` fixes
    the draws (a generator of its own: the global RNG is untouched)."""
    if not prompts or samples <= 0:
        return [[] for _ in prompts]
    encoded = encode_prompts(tokenizer, prompts)
    rows = [ids for ids in encoded for _ in range(samples)]
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    with _decoding(model, decoder) as (engine, autocast):
        ids = greedy_decode(
            model,
            rows,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            eos_ids=_eos_ids(model, tokenizer),
            pad_id=_pad_id(tokenizer),
            stop=_AnswerStops(tokenizer),
            temperature=temperature,
            generator=gen,
            autocast=autocast,
            decoder=engine,
        )
    texts = [_cut_after_answer(t) for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return [texts[i * samples : (i + 1) * samples] for i in range(len(prompts))]


def _cache_keyword(model: PreTrainedModel) -> str:
    """``cache`` (newer transformers; ``past_key_values`` is deprecated there) or the old name."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _extend(
    ids: list[int], new: list[int], eos_ids: set[int], stop: _AnswerStops | None, key: int
) -> bool:
    """Append ``new`` to a row's tokens up to EOS; True when the row is finished."""
    for n, t in enumerate(new):
        if t in eos_ids:
            ids.extend(new[:n])
            ids.append(t)
            return True
    ids.extend(new)
    return stop is not None and stop.feed(key, new)


@torch.no_grad()
def hf_generate_paths(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 160,
    batch_size: int = 64,
    on_done: Callable[[int], object] | None = None,
    **options: Any,
) -> list[str]:
    """The reference: plain ``model.generate`` (greedy, length-sorted left-padded batches, no
    answer stop), for tests, ``benchmarks/real_model_speed.py`` and the compiled generator
    (:mod:`lada.accel.compiled`). ``options`` are further ``GenerationConfig`` fields (e.g.
    ``cache_implementation``, ``compile_config``, or ``do_sample`` with ``temperature``);
    ``on_done(n)`` is called after each batch of ``n`` prompts."""
    encoded = encode_prompts(tokenizer, prompts)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    pad = _pad_id(tokenizer)
    config = GenerationConfig(
        **{
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "num_beams": 1,
            "pad_token_id": pad,
            "eos_token_id": sorted(_eos_ids(model, tokenizer)),
            **options,
        }
    )
    device = next(model.parameters()).device
    out = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in left_pad([encoded[i] for i in idx], pad).items()}
        width = batch["input_ids"].shape[1]
        generated = model.generate(**batch, generation_config=config)
        texts = tokenizer.batch_decode(generated[:, width:].tolist(), skip_special_tokens=True)
        for i, text in zip(idx, texts, strict=True):
            out[i] = text
        if on_done is not None:
            on_done(len(idx))
    return out


def _cut_after_answer(text: str) -> str:
    """Drop what follows the first complete ``Answer:`` line (the newline and beyond)."""
    pos = text.find(ANSWER_PREFIX)
    if pos < 0:
        return text
    end = text.find("\n", pos)
    while end >= 0 and not text[pos + len(ANSWER_PREFIX) : end].strip():
        end = text.find("\n", end + 1)
    return text if end < 0 else text[:end]
