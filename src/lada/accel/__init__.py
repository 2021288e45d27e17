"""Speed machinery, behind a small surface.

* :func:`training` (``with accel.training(model): ...``): the copies a training run or a
  scoring pass computes with (bf16 cast copies of frozen weights, CPU LoRA dropout);
* :func:`generator` (``accel.generator(model, tokenizer).paths(prompts)``): what generates
  reasoning paths (LaDa's decode loop on the lean decoder or the model's own forward);
* :func:`configure` with the ``runtime:`` config section (:class:`RuntimeConfig`), and
  :func:`record`, what ran, for ``summary.json`` and ``log.txt``.

Inside: the lean decoder, cast copies, packed linears, the C kernels (``kernels/*.c``) and
their build (:mod:`lada.accel.c_build`), and the dtype choice (:mod:`lada.accel.precision`).
Names are imported lazily, so that the config can name :class:`RuntimeConfig` without torch.
"""

from __future__ import annotations

from lada.utils.lazy import lazy_getattr

_EXPORTS = {
    "RuntimeConfig": "lada.accel.settings",
    "configure": "lada.accel.switch",
    "current": "lada.accel.switch",
    "using": "lada.accel.switch",
    "training": "lada.accel.copies",
    "generator": "lada.accel.generation",
    "Generator": "lada.accel.generation",
    "record": "lada.accel.runtime",
    "record_line": "lada.accel.runtime",
}

__getattr__ = lazy_getattr("lada.accel", _EXPORTS)

__all__ = sorted(_EXPORTS)
