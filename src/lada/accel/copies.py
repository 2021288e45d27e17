"""Training and scoring copies: what a training run or a scoring pass computes with."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from lada.accel.switch import compile_enabled, speedups_allowed


@contextlib.contextmanager
def training(model: nn.Module, *, dropout: bool = True) -> Iterator[nn.Module]:
    """``model`` set up for a training run or scoring pass, restored on exit. With
    ``runtime.accel`` ``torch`` or ``native``: a model that autocasts to bf16 on CPU computes its
    frozen linear layers from a bf16 copy made once (:func:`lada.accel.cast_weights.
    frozen_cast_copy`), and with ``dropout`` its LoRA dropout draws 16-bit masks
    (:func:`lada.accel.lora_dropout.cpu_lora_dropout`); with ``off`` it runs as it is; with
    ``compile`` it runs as it is with its forward in torch.compile
    (:func:`lada.accel.compiled.compiled_forward`: compiled on first use, a
    :class:`lada.accel.compiled.CompileError` where it cannot be)."""
    if compile_enabled():
        from lada.accel.compiled import compiled_forward

        with compiled_forward(model):
            yield model
        return
    if not speedups_allowed():
        yield model
        return
    from lada.accel.cast_weights import frozen_cast_copy
    from lada.accel.lora_dropout import cpu_lora_dropout

    with contextlib.ExitStack() as stack:
        stack.enter_context(frozen_cast_copy(model))
        if dropout:
            stack.enter_context(cpu_lora_dropout(model))
        yield model
