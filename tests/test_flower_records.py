"""Every protocol payload survives Payload -> Flower RecordDict -> (Flower's wire objects) ->
RecordDict -> Payload exactly. Fast: no simulation, no models."""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

pytest.importorskip("flwr")

from flwr.app import RecordDict  # noqa: E402
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects  # noqa: E402
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents  # noqa: E402

from lada.engines.flower.records import (  # noqa: E402
    CONFIG_JSON,
    payload_to_recorddict,
    record_to_recorddict,
    recorddict_to_payload,
    recorddict_to_record,
)
from lada.federation.protocol import (  # noqa: E402
    INSTRUCTIONS,
    RESULTS,
    DistillIns,
    DistillRes,
    EmbedIns,
    EmbedRes,
    EvaluateIns,
    EvaluateRes,
    GenerateIns,
    LocalTrainIns,
    LocalTrainRes,
    PathsRes,
    Payload,
    Task,
)


def _over_the_wire(rd: RecordDict) -> RecordDict:
    """What the receiver gets: the RecordDict deflated into Flower's objects and inflated."""
    contents = {oid: obj.deflate() for oid, obj in get_all_nested_objects(rd).items()}
    out = inflate_object_from_contents(rd.object_id, contents)
    assert isinstance(out, RecordDict)
    return out


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


PAYLOADS: list[Payload] = [
    LocalTrainIns(round=3),
    EmbedIns(round=1, ids=["p0", "p1", "é☃"]),
    EmbedIns(round=1, ids=[]),
    GenerateIns(round=2, ids=["p7"]),
    GenerateIns(round=2, ids=[]),
    DistillIns(round=2, ids=["a", "b"], teacher_paths=["step 1 ... #### 4", ""]),
    DistillIns(round=2, ids=[], teacher_paths=[]),
    EvaluateIns(round=0),
    LocalTrainRes(num_samples=24, mean_loss=1.2345678901234567),
    LocalTrainRes(num_samples=0, mean_loss=float("nan")),
    EmbedRes(ids=["p0", "p1"], features=_rng().standard_normal((2, 64)).astype(np.float32)),
    EmbedRes(ids=[], features=np.zeros((0, 64), dtype=np.float32)),
    PathsRes(ids=["p0"], paths=["a path\nwith lines"]),
    PathsRes(ids=[], paths=[]),
    DistillRes(
        ids=["x", "y", "z"],
        loss_before=np.array([1.0, 2.0, 3.0], dtype=np.float32),
        loss_after=np.array([0.5, 1.5, np.inf], dtype=np.float32),
        margin=np.array([0.0, -0.1, 0.2], dtype=np.float32),
        num_pairs=2,
    ),
    DistillRes(
        ids=[],
        loss_before=np.zeros(0, dtype=np.float32),
        loss_after=np.zeros(0, dtype=np.float32),
        margin=np.zeros(0, dtype=np.float32),
        num_pairs=0,
    ),
    EvaluateRes(num_samples=8, accuracy=0.375, groups=json.dumps([{"domain": "d", "n": 8}])),
    EvaluateRes(num_samples=0, accuracy=0.0),
]


def _assert_same(a: Payload, b: Payload) -> None:
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray)
            assert x.dtype == y.dtype and x.shape == y.shape, f.name
            np.testing.assert_array_equal(x, y)
        elif isinstance(x, float) and np.isnan(x):
            assert isinstance(y, float) and np.isnan(y)
        else:
            assert type(x) is type(y), (f.name, type(x), type(y))
            assert x == y, f.name


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_payload_round_trips(payload: Payload) -> None:
    rd = _over_the_wire(payload_to_recorddict(payload))
    _assert_same(payload, recorddict_to_payload(type(payload), rd))


def _example(cls: type[Payload]) -> Payload:
    """An instance of any payload class, its fields filled by type."""
    values: dict[type, Any] = {
        int: 7,
        float: 0.25,
        str: "a b\nc",
        list[str]: ["p1", "p2", ""],
        list[int]: [1, -2],
        list[float]: [0.5, 1.5],
        np.ndarray: np.arange(12, dtype=np.float32).reshape(3, 4),
    }
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: values[hints[f.name]] for f in dataclasses.fields(cls)})


@pytest.mark.parametrize(
    "cls",
    sorted({*INSTRUCTIONS.values(), *RESULTS.values()}, key=lambda c: c.__name__),
    ids=lambda c: c.__name__,
)
def test_every_task_payload_round_trips(cls: type[Payload]) -> None:
    """Every payload of every task (new tasks included), with all fields set."""
    payload = _example(cls)
    _assert_same(
        payload, recorddict_to_payload(cls, _over_the_wire(payload_to_recorddict(payload)))
    )
    assert set(Task) <= set(INSTRUCTIONS) and set(Task) <= set(RESULTS)


def test_awkward_config_values_round_trip() -> None:
    record = {
        "config": {
            "none": None,
            "empty": [],
            "mixed": [1, "a", 2.0],
            "nested": [[1, 2], [3]],
            "mapping": {"a": [1, None]},
            "huge": 2**70,
            "bools": [True, False],
            "ints": [1, 2, -(2**63)],
            "floats": [0.1, 1e300],
            "bytes": b"\x00\xff",
            "tuple": (1, 2),
            "text": "ünïcödé",
        },
        "arrays": {
            "f16": np.arange(6, dtype=np.float16).reshape(2, 3),
            "i64_big_endian": np.arange(4, dtype=">i8"),
            "scalar": np.array(3.5),
            "empty": np.zeros((0, 5), dtype=np.float32),
            "bool": np.array([True, False]),
            "non_contiguous": np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2],
        },
    }
    rd = _over_the_wire(record_to_recorddict(record))
    assert CONFIG_JSON in rd  # the values a ConfigRecord cannot hold went as JSON
    back = recorddict_to_record(rd)
    expected = dict(record["config"], tuple=[1, 2])
    assert back["config"] == expected
    assert type(back["config"]["huge"]) is int and type(back["config"]["mixed"][2]) is float
    assert set(back["arrays"]) == set(record["arrays"])
    for name, a in record["arrays"].items():
        b = back["arrays"][name]
        assert b.dtype == a.dtype and b.shape == a.shape, name
        np.testing.assert_array_equal(a, b)
        assert b.flags.writeable


def test_large_array_is_chunked_by_flower_and_reassembled() -> None:
    big = _rng().standard_normal((3_000, 1_000)).astype(np.float32)  # 12 MB
    res = EmbedRes(ids=[f"p{i}" for i in range(3_000)], features=big)
    rd = payload_to_recorddict(res)
    kinds = [type(o).__name__ for o in get_all_nested_objects(rd).values()]
    assert kinds.count("ArrayChunk") > 1
    _assert_same(res, recorddict_to_payload(EmbedRes, _over_the_wire(rd)))


def test_unsendable_value_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="cannot be sent"):
        record_to_recorddict({"config": {"obj": object()}, "arrays": {}})
