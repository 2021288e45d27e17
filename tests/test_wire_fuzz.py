"""Property tests of the wire decoders: random, truncated and mutated bytes give a
record or a WireError, never another exception; sizes are bounded, so nothing can hang."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lada.config.schema import LimitsConfig
from lada.federation.protocol import RESULTS, EmbedRes, Task, WireError, decode, encode
from lada.federation.validation import validate_reply

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # deadline off: the box is shared; inputs are small, so a hang would still show as a timeout
LIMITS = LimitsConfig()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
dtypes = st.sampled_from(["<f4", "<f2", "<i4", "<i8", "|b1", "<u2", ">f8", "|O", "<U3", "V8", "x"])
shapes = st.lists(st.integers(min_value=-2, max_value=2**40), max_size=4)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """Plausible messages: a JSON header with random config and array entries, random data."""
    entries = draw(st.lists(st.tuples(st.text(max_size=6), dtypes, shapes).map(list), max_size=3))
    config = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
    head = json.dumps({"config": config, "arrays": entries}).encode()
    if draw(st.booleans()):
        head = head[: draw(st.integers(0, len(head)))]
    n = len(head) + draw(st.integers(-3, 3))
    body = draw(st.binary(max_size=256))
    return max(n, 0).to_bytes(8, "little") + head + body


def _decode_or_wire_error(data: bytes) -> dict | None:
    try:
        return decode(data)
    except WireError as e:
        assert str(e)  # a reason, not an empty message
        return None


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    _decode_or_wire_error(data)


@FUZZ
@given(messages())
def test_garbled_messages_decode_or_raise_wire_error(data: bytes) -> None:
    record = _decode_or_wire_error(data)
    if record is None:
        return
    for task, cls in RESULTS.items():  # whatever decodes: from_record and validation hold too
        try:
            reply = cls.from_record(record)
        except WireError:
            continue
        ins = type("Ins", (), {"round": 1, "ids": ["a"]})()
        why = validate_reply(task, ins, reply, LIMITS, client=0)
        assert why is None or isinstance(why, str)


payloads = st.builds(
    lambda ids, w: EmbedRes(ids, np.arange(len(ids) * w, dtype=np.float32).reshape(len(ids), w)),
    st.lists(st.text(max_size=10), max_size=5),
    st.integers(1, 6),
)


@FUZZ
@given(payloads, st.data())
def test_every_truncation_of_a_valid_message_is_a_wire_error(
    p: EmbedRes, data: st.DataObject
) -> None:
    wire = encode(p.to_record())
    assert EmbedRes.from_record(decode(wire)).ids == p.ids
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(WireError):
        decode(wire[:cut])
    with pytest.raises(WireError):
        decode(wire + b"\x00")  # trailing bytes


@FUZZ
@given(payloads, st.data())
def test_flipped_bytes_decode_or_raise_wire_error(p: EmbedRes, data: st.DataObject) -> None:
    wire = bytearray(encode(p.to_record()))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    record = _decode_or_wire_error(bytes(wire))
    if record is not None:
        try:
            reply = EmbedRes.from_record(record)
        except WireError:
            return
        validate_reply(Task.EMBED, type("I", (), {"round": 1, "ids": p.ids})(), reply, LIMITS)


def test_a_huge_announced_array_fails_before_any_allocation() -> None:
    head = json.dumps({"config": {}, "arrays": [["x", "<f8", [10**6, 10**6]]]}).encode()
    with pytest.raises(WireError, match="needs 8000000000000 bytes, 4 left"):
        decode(len(head).to_bytes(8, "little") + head + b"\x00" * 4)
    with pytest.raises(WireError, match="exceeds the limit of 10"):
        decode(b"\x00" * 11, max_bytes=10)


def test_object_and_string_dtypes_are_refused() -> None:
    for dt in ("|O", "<U3", "|S2", "V8", "<f8,<i4"):
        head = json.dumps({"config": {}, "arrays": [["x", dt, [1]]]}).encode()
        with pytest.raises(WireError):
            decode(len(head).to_bytes(8, "little") + head + b"\x00" * 16)


@st.composite
def recorddicts(draw: st.DrawFn):
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    rd = RecordDict()
    if draw(st.booleans()):
        rd["config"] = ConfigRecord({"ids": draw(st.lists(st.text(max_size=5), max_size=3))})
    if draw(st.booleans()):
        rd["config.json"] = ConfigRecord({"v": draw(st.text(max_size=30))})  # maybe not JSON
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=64))
        shape = draw(st.lists(st.integers(0, 4), max_size=2))
        rd["arrays"] = ArrayRecord(
            {"a": Array(dtype=draw(dtypes), shape=tuple(shape), stype="numpy.ndarray", data=raw)}
        )
    if draw(st.booleans()):
        rd["arrays.0d"] = ConfigRecord({"names": draw(st.lists(st.text(max_size=3), max_size=2))})
    return rd


@FUZZ
@given(recorddicts())
def test_flower_records_decode_or_raise_wire_error(rd) -> None:
    pytest.importorskip("flwr")
    from lada.engines.flower.records import recorddict_size, recorddict_to_payload

    assert recorddict_size(rd) >= 0
    for cls in RESULTS.values():
        try:
            recorddict_to_payload(cls, rd)
        except WireError:
            pass
