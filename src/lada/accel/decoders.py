"""Which engine LaDa's decode loop (:func:`lada.eval.generate.greedy_decode`) runs on."""

from __future__ import annotations

import logging

from transformers import PreTrainedModel

from lada.accel.switch import current, speedups_allowed
from lada.utils.log_once import log_once

log = logging.getLogger("lada.eval.generate")  # where users have seen these lines


DECODERS = ("auto", "lean", "hf")


def choose_decoder(model: PreTrainedModel, decoder: str = "auto") -> str:
    """``lean`` (:class:`lada.accel.lean_decoder.LeanDecoder`) or ``hf`` (the model's own
    forward). ``auto`` takes the lean decoder where the model supports it and logs why not
    otherwise; ``lean`` on a model it cannot run is an error. With ``runtime.accel: off`` (or
    ``compile``, whose generator is :class:`lada.accel.compiled.CompiledGenerator`), ``auto``
    is ``hf`` and ``lean`` an error."""
    from lada.accel.lean_decoder import lean_decoder_unsupported

    if decoder not in DECODERS:
        raise ValueError(f"decoder={decoder!r}: expected one of {', '.join(DECODERS)}")
    if decoder == "hf":
        return "hf"
    if not speedups_allowed():
        if decoder == "lean":
            raise ValueError(
                f"generator 'lean' needs runtime.accel torch or native (it is {current().accel})"
            )
        return "hf"
    reason = lean_decoder_unsupported(model)
    if reason is None:
        return "lean"
    if decoder == "lean":
        raise ValueError(f"decoder='lean' cannot run this model: {reason}")
    log_once(log, f"generation runs the model's own forward (lean decoder: {reason})")
    return "hf"
