"""Protocol payloads <-> Flower ``RecordDict``s.

A payload's ``to_record()`` is ``{"config": {...}, "arrays": {name: np.ndarray}}``. It maps to
a ``RecordDict`` with up to three records:

``"config"``       a ``ConfigRecord`` with every value a ConfigRecord can hold as it is: ``bool``,
                   ``int`` (64-bit), ``float``, ``str``, ``bytes`` and homogeneous lists of one of
                   them, empty lists included;
``"config.json"``  a ``ConfigRecord`` of JSON strings for everything else (``None``, mixed or
                   nested lists, mappings, integers beyond 64 bits);
``"arrays"``       an ``ArrayRecord``: one ``Array`` per numpy array, dtype, byte order and shape
                   kept (Flower itself splits large arrays into chunks on the wire);
``"arrays.0d"``    the names of 0-d arrays, which Flower's wire format turns into shape (1,).

``recorddict_to_record`` inverts it exactly (tuples come back as lists, which ``from_record``
does anyway). Nothing here knows about tasks or the algorithm.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from lada.federation.protocol import ECHO_KEYS, WIRE_DTYPE_KINDS, Payload, Record, WireError

CONFIG = "config"
CONFIG_JSON = "config.json"
ARRAYS = "arrays"
ARRAYS_0D = "arrays.0d"

_SCALARS = (bool, int, float, str, bytes)
_INT64 = (-(2**63), 2**63 - 1)


def _int_ok(v: int) -> bool:
    return _INT64[0] <= v <= _INT64[1]


def _native(value: Any) -> bool:
    """Can a ConfigRecord hold ``value`` unchanged (and give it back with the same type)?"""
    t = type(value)
    if t in _SCALARS:
        return t is not int or _int_ok(value)
    if t is list:
        if not value:
            return True
        first = type(value[0])
        if first not in _SCALARS or any(type(v) is not first for v in value):
            return False
        return first is not int or all(_int_ok(v) for v in value)
    return False


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def record_to_recorddict(record: Record) -> RecordDict:
    """``{"config": ..., "arrays": ...}`` -> RecordDict (see the module doc)."""
    plain: dict[str, Any] = {}
    as_json: dict[str, str] = {}
    for key, value in record.get("config", {}).items():
        if isinstance(value, tuple):
            value = list(value)
        if _native(value):
            plain[key] = value
        else:
            try:
                as_json[key] = json.dumps(_jsonable(value), ensure_ascii=False)
            except TypeError as e:
                raise TypeError(f"config value {key!r} cannot be sent: {e}") from None
    rd = RecordDict({CONFIG: ConfigRecord(plain)})
    if as_json:
        rd[CONFIG_JSON] = ConfigRecord(as_json)
    arrays = record.get("arrays", {})
    if arrays:
        rd[ARRAYS] = ArrayRecord(
            {name: Array(np.ascontiguousarray(a)) for name, a in arrays.items()}
        )
        scalars = [name for name, a in arrays.items() if a.ndim == 0]
        if scalars:
            rd[ARRAYS_0D] = ConfigRecord({"names": scalars})
    return rd


# a ConfigRecord value's JSON text (``config.json``) may hold at most this many characters: a
# payload's own fields never need it beyond a few odd scalars, and parsed JSON takes many times
# the memory of its text
MAX_JSON_CHARS = 1 << 20
ITEM_BYTES = 8  # what one config value costs at least (an empty string too)


def recorddict_size(rd: RecordDict) -> int:
    """Bytes a received ``RecordDict`` holds: its arrays' serialised data plus every config and
    metric value (at least :data:`ITEM_BYTES` each, an empty string included), counted before
    anything is decoded (``limits.max_message_bytes``)."""
    n = 0
    for record in rd.values():
        if isinstance(record, ArrayRecord):
            n += sum(len(a.data) for a in record.values())
        else:  # ConfigRecord, MetricRecord: mappings of scalars and lists of scalars
            for key, value in record.items():
                items = value if isinstance(value, list) else [value]
                n += len(key) + ITEM_BYTES
                n += sum(
                    max(len(v), ITEM_BYTES) if isinstance(v, str | bytes) else ITEM_BYTES
                    for v in items
                )
    return n


def recorddict_to_record(rd: RecordDict, keys: set[str] | None = None) -> Record:
    """Inverse of :func:`record_to_recorddict`; :class:`WireError` for anything it did not
    produce (garbled JSON, JSON text beyond :data:`MAX_JSON_CHARS`, an array of objects,
    strings or an unknown serialisation). ``keys``: the config keys wanted (others are not
    parsed)."""
    try:
        return _recorddict_to_record(rd, keys)
    except WireError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, EOFError) as e:
        raise WireError(f"malformed RecordDict: {type(e).__name__}: {e}") from None


def _recorddict_to_record(rd: RecordDict, keys: set[str] | None) -> Record:
    config: dict[str, Any] = {}
    if CONFIG in rd:
        for key, value in rd[CONFIG].items():
            config[key] = list(value) if isinstance(value, list) else value
    if CONFIG_JSON in rd:
        texts = {k: v for k, v in rd[CONFIG_JSON].items() if keys is None or k in keys}
        if any(not isinstance(t, str) for t in texts.values()):
            raise WireError(f"{CONFIG_JSON}: values must be JSON text")
        chars = sum(len(t) for t in texts.values())
        if chars > MAX_JSON_CHARS:
            raise WireError(f"{CONFIG_JSON}: {chars} characters of JSON (at most {MAX_JSON_CHARS})")
        for key, text in texts.items():
            config[key] = json.loads(text)
    arrays: dict[str, np.ndarray] = {}
    scalars = set(rd[ARRAYS_0D]["names"]) if ARRAYS_0D in rd else set()  # type: ignore[arg-type]
    if ARRAYS in rd:
        for name, arr in rd[ARRAYS].items():
            a = arr.numpy()
            if a.dtype.kind not in WIRE_DTYPE_KINDS or a.dtype.fields is not None:
                raise WireError(f"array {name!r}: dtype {a.dtype} is not a number type")
            if name in scalars:
                a = a.reshape(())
            arrays[name] = a if a.flags.writeable else a.copy()
    return {"config": config, "arrays": arrays}


def payload_to_recorddict(payload: Payload) -> RecordDict:
    return record_to_recorddict(payload.to_record())


def recorddict_to_payload(cls: type[Payload], rd: RecordDict) -> Payload:
    """The ``cls`` payload in ``rd``; config values that are not its fields (or the echo) are
    not parsed."""
    keys = {f.name for f in dataclasses.fields(cls)} | set(ECHO_KEYS)
    return cls.from_record(recorddict_to_record(rd, keys))
