"""Hostile and broken replies: each is rejected whole, reported, and leaves the
filters exactly as if its sender had simply not answered.

Fault injection: the in-process engine behind a transport that breaks one client's reply to
one task; the reference run is the same with that reply replaced by a plain Failure.
Per-case checks of the pure validators run without models.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY

from lada.config import FaultSpec, load_config
from lada.config.schema import LimitsConfig
from lada.engines.inprocess import InProcessEngine
from lada.federation.corrupt import CORRUPTIONS, corrupt
from lada.federation.protocol import (
    DistillIns,
    DistillRes,
    Echo,
    EmbedIns,
    EmbedRes,
    EvaluateIns,
    EvaluateRes,
    GenerateIns,
    GetWeightsIns,
    LogitDistillIns,
    LogitsIns,
    LogitsRes,
    PathsRes,
    Payload,
    SetWeightsIns,
    Task,
    WeightsRes,
)
from lada.federation.round import run_round
from lada.federation.transport import Failure
from lada.federation.validation import (
    Expected,
    InvalidMessage,
    validate_instruction,
    validate_reply,
)
from lada.runner.run import build_client, build_server, prepare_run_dir, run
from lada.runner.setup import load_run_data

LIMITS = LimitsConfig()

# ---- the pure validators -------------------------------------------------------------------


def _stamp(p: Payload, task: Task, round_idx: int = 3, client: int = 1) -> Payload:
    p.echo = Echo(str(task), round_idx, client)  # type: ignore[misc]
    return p


def _good_replies() -> list[tuple[Task, Payload, Payload]]:
    ids = ["p1", "p2", "p3"]
    f = np.arange(12, dtype=np.float32).reshape(3, 4)
    v = np.ones(3, np.float32)
    lengths = np.array([2, 0, 1], np.int32)
    return [
        (Task.EMBED, EmbedIns(3, ids), EmbedRes(ids, f)),
        (Task.GENERATE, GenerateIns(3, ids), PathsRes(ids, ["a", "b", "c"])),
        (Task.DISTILL, DistillIns(3, ids, ["a", "b", "c"]), DistillRes(ids, v, v, v * 0, 2)),
        (
            Task.EVALUATE,
            EvaluateIns(3),
            EvaluateRes(4, 0.5, json.dumps({"domain": {"x": [2, 4]}})),
        ),
        (
            Task.LOGITS,
            LogitsIns(3, ids, 4),
            LogitsRes(
                ids,
                "slm",
                "v1",
                lengths,
                np.zeros((3, 4), np.int32),
                np.zeros((3, 4), np.float16),
                v,
            ),
        ),
    ]


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_every_corruption_of_every_reply_is_rejected_with_a_reason(how: str) -> None:
    for task, ins, good in _good_replies():
        good = _stamp(good, task)
        assert validate_reply(task, ins, good, LIMITS, client=1) is None, task
        bad = corrupt(good, how)
        why = validate_reply(task, ins, bad, LIMITS, client=1)
        assert why, (task, how)
        assert validate_reply(task, ins, good, LIMITS, client=1) is None  # good is untouched


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: setattr(r, "features", r.features.astype(np.int64)), "2-D floats"),
        (lambda r: setattr(r, "features", r.features[:, :0]), "width 0"),
        (lambda r: setattr(r, "features", r.features.reshape(-1)), "2-D"),
        (lambda r: setattr(r, "ids", r.ids[::-1]), "order or count"),
        (lambda r: setattr(r, "ids", r.ids[:2]), "order or count"),
        (lambda r: setattr(r, "ids", "p1"), "list of strings"),
        (lambda r: setattr(r, "echo", None), "does not say"),
        (lambda r: setattr(r, "echo", Echo("embed", 3, 2)), "client 2"),
    ],
)
def test_embed_reply_checks(change: Callable[[Any], None], reason: str) -> None:
    task, ins, reply = _good_replies()[0]
    reply = _stamp(reply, task)
    change(reply)
    why = validate_reply(task, ins, reply, LIMITS, client=1)
    assert why is not None and reason in why


def test_feature_width_must_match_the_clients_filters_and_the_size_limit_holds() -> None:
    task, ins, reply = _good_replies()[0]
    reply = _stamp(reply, task)
    assert "filters take 8" in validate_reply(task, ins, reply, LIMITS, client=1, feature_dim=8)
    small = LimitsConfig(max_message_bytes=100)
    assert "max_message_bytes=100" in validate_reply(task, ins, reply, small, client=1)
    paths = _stamp(PathsRes(["a"], ["x" * 11]), Task.GENERATE)
    short = LimitsConfig(max_path_chars=10)
    why = validate_reply(Task.GENERATE, GenerateIns(3, ["a"]), paths, short, client=1)
    assert "max_path_chars=10" in why


def test_replies_must_match_what_the_server_knows() -> None:
    """FedMKT's vocabulary and FedCoLLM's parameter layout: a mismatch is a rejection, not a
    crash of the whole run."""
    task, ins, reply = _good_replies()[4]
    reply = _stamp(reply, task)
    assert validate_reply(task, ins, reply, LIMITS, expect=Expected(vocab="v1")) is None
    why = validate_reply(task, ins, reply, LIMITS, expect=Expected(vocab="v2"))
    assert why is not None and "vocabulary 'v1'" in why
    w = _stamp(WeightsRes(3, ["a", "b"], "[[2], [1]]", np.zeros(3, np.float32)), Task.GET_WEIGHTS)
    same = Expected(weight_names=("a", "b"), weight_shapes=((2,), (1,)))
    other = Expected(weight_names=("a", "b"), weight_shapes=((1,), (2,)))
    assert validate_reply(Task.GET_WEIGHTS, GetWeightsIns(3), w, LIMITS, expect=same) is None
    why = validate_reply(Task.GET_WEIGHTS, GetWeightsIns(3), w, LIMITS, expect=other)
    assert why is not None and "differ from the server's SLM" in why


def test_a_reply_of_another_payload_type_is_rejected() -> None:
    _, ins, _ = _good_replies()[1]
    wrong = _stamp(EmbedRes(["p1", "p2", "p3"], np.zeros((3, 2), np.float32)), Task.GENERATE)
    assert "expected a PathsRes" in validate_reply(Task.GENERATE, ins, wrong, LIMITS)


def test_the_client_refuses_bad_instructions() -> None:
    public = {"p1", "p2", "p3"}
    validate_instruction(Task.DISTILL, DistillIns(1, ["p1"], ["path"]), LIMITS, public)
    bad: list[tuple[Task, Any, str]] = [
        (Task.DISTILL, DistillIns(1, ["p1", "zz"], ["a", "b"]), "not in this client's public"),
        (Task.DISTILL, DistillIns(1, ["p1", "p1"], ["a", "b"]), "duplicates"),
        (Task.DISTILL, DistillIns(1, ["p1"], ["a", "b"]), "2 paths for 1 ids"),
        (Task.DISTILL, DistillIns(1, ["p1"], ["x" * 30_000]), "max_path_chars"),
        (Task.DISTILL, DistillIns(-1, ["p1"], ["a"]), "round -1"),
        (Task.EMBED, DistillIns(1, ["p1"], ["a"]), "expected a EmbedIns"),
        (Task.LOGITS, LogitsIns(1, ["p1"], 0), "top_k 0"),
        (
            Task.SET_WEIGHTS,
            SetWeightsIns(1, ["w"], "[[2, 2]]", np.array([1, 2, np.nan, 4], np.float32)),
            "non-finite",
        ),
        (Task.SET_WEIGHTS, SetWeightsIns(1, ["w"], "[[2, 2]]", np.zeros(3, np.float32)), "flat"),
        (
            Task.DISTILL_LOGITS,
            LogitDistillIns(
                1,
                ["p1"],
                [],
                "llm",
                "v",
                np.array([2], np.int32),
                np.zeros((1, 4), np.int32),  # 1 row for 2 tokens
                np.zeros((1, 4), np.float16),
                np.zeros(1, np.float32),
            ),
            "1 rows for 2 tokens",
        ),
    ]
    for task, ins, reason in bad:
        with pytest.raises(InvalidMessage, match=reason):
            validate_instruction(task, ins, LIMITS, public)


# ---- fault injection on the tiny federation ------------------------------------------------


class Breaking:
    """Wraps an engine; in ``round_idx`` replaces client ``client``'s ``task`` reply with
    ``change(reply, instruction, history)`` (history: this client's earlier replies by
    (round, task))."""

    def __init__(
        self,
        inner: InProcessEngine,
        client: int,
        task: Task,
        round_idx: int,
        change: Callable[[Payload, Payload, dict], Payload | Failure],
    ) -> None:
        self.inner, self.client, self.task, self.round = inner, client, task, round_idx
        self.change = change
        self.history: dict[tuple[int, Task], Payload] = {}
        self.comm = inner.comm

    def clients(self) -> list[int]:
        return self.inner.clients()

    def broadcast(self, round_idx: int, task: Task, instructions: dict[int, Payload]):
        replies = self.inner.broadcast(round_idx, task, instructions)
        k = self.client
        r = replies.get(k)
        if r is not None and not isinstance(r, Failure):
            self.history[(round_idx, task)] = r
            if (round_idx, task) == (self.round, self.task):
                replies[k] = self.change(r, instructions[k], self.history)
        return replies


def _missing(_r: Payload, _ins: Payload, _h: dict) -> Failure:
    return Failure("error", "simply missing")


def _set(name: str, value: Callable[[Any], Any]) -> Callable[[Payload, Payload, dict], Payload]:
    def change(r: Payload, ins: Payload, _h: dict) -> Payload:
        out = copy.deepcopy(r)
        out.echo = r.echo  # type: ignore[misc]
        setattr(out, name, value(r))
        return out

    return change


def _other_public_id(r: Payload, ins: Payload, world: dict) -> list[str]:
    asked = set(r.ids)  # type: ignore[attr-defined]
    other = next(i for i in world["public_ids"] if i not in asked)
    return [other, *r.ids[1:]]  # type: ignore[attr-defined]


_WORLD: dict[str, Any] = {}
# two clients with the smallest SLM, little training: only the exchange matters here
LIGHT = [
    *TINY,
    "clients=[{model: slm-xs}, {model: slm-xs}]",
    "eval.limit=2",
    "local.optim.epochs=1",
    "data.split.train_per_client=8",
    "distill.slm_replay=0",
    "distill.llm_replay=0",
]

CASES: dict[str, tuple[Task, int, Callable[[Payload, Payload, dict], Payload | Failure]]] = {
    "nan_losses": (Task.DISTILL, 1, _set("loss_after", lambda r: r.loss_after * np.nan)),
    "inf_features": (
        Task.EMBED,
        1,
        _set("features", lambda r: np.where(r.features > 0, np.inf, r.features)),
    ),
    # a real public id the filter did not allocate (the server could look its context up)
    "wrong_ids": (Task.DISTILL, 1, _set("ids", lambda r: _other_public_id(r, r, _WORLD))),
    "wrong_shapes": (Task.EMBED, 1, _set("features", lambda r: r.features[:-1])),  # a row short
    "oversize_path": (
        Task.GENERATE,
        1,
        _set("paths", lambda r: ["Step 1: " + "7" * 25_000, *r.paths[1:]]),
    ),
    # each path within max_path_chars, the whole reply over max_message_bytes (set to 16 KiB)
    "oversize_payload": (Task.GENERATE, 1, _set("paths", lambda r: ["9" * 16_500] * len(r.paths))),
    "wrong_task": (
        Task.GENERATE,
        1,
        lambda r, ins, _h: _with_echo(
            EmbedRes(list(r.ids), np.zeros((len(r.ids), 4), np.float32)),  # type: ignore[attr-defined]
            Echo("embed", ins.round, 1),  # type: ignore[attr-defined]
        ),
    ),
    # round 2's embed reply replaced by the same client's (well-formed) reply of round 1
    "replayed_round": (Task.EMBED, 2, lambda r, ins, h: h[(1, Task.EMBED)]),
    # finite, but beyond what the filter's standardisation and k-means can hold in float32
    "extreme_features": (
        Task.EMBED,
        1,
        _set("features", lambda r: np.full_like(r.features, 3.4e38)),
    ),
    # a mask longer than the picks (the reward indexed it and raised)
    "trained_mask_length": (
        Task.DISTILL,
        1,
        _set("trained", lambda r: np.ones(len(r.ids) + 2, np.uint8)),
    ),
    # finite losses whose exp overflows (B_t = inf, r_batch = NaN)
    "huge_losses": (Task.DISTILL, 1, _set("loss_after", lambda r: r.loss_after + 800.0)),
}


def _with_echo(p: Payload, echo: Echo) -> Payload:
    p.echo = echo  # type: ignore[misc]
    return p


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("hostile")
    args = [*LIGHT, "limits.max_message_bytes=16384"]
    cfg, _ = prepare_run_dir(out / "run", load_config(None, args), False)
    data = load_run_data(cfg, out / "run")
    from lada.runner.run import prepare_zoo_models

    prepare_zoo_models(cfg, data.world_cfg)
    _WORLD.update(cfg=cfg, data=data, out=out, public_ids=[s.id for s in data.public], refs={})
    return _WORLD


def _federate(
    world: dict[str, Any], name: str, task: Task, round_idx: int, change, cfg: Any = None
) -> tuple:
    """Rounds 1..round_idx with client 1's ``task`` reply changed in the last one."""
    cfg, data = cfg or world["cfg"], world["data"]
    d = world["out"] / name
    clients = {k: build_client(cfg, data, k, d / f"client_{k}") for k in range(2)}
    server = build_server(cfg, data)
    engine = Breaking(InProcessEngine(clients), 1, task, round_idx, change)
    reports = [run_round(t, server, engine) for t in range(1, round_idx + 1)]
    return server, reports[-1]


def _filter_states(server: Any) -> dict[tuple[int, str], dict[str, Any]]:
    return {(k, d): f.state_dict() for k, per in server.filters.items() for d, f in per.items()}


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b, equal_nan=False), where
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_reply_counts_as_a_missing_one(case: str, world: dict[str, Any]) -> None:
    task, round_idx, change = CASES[case]
    server, rep = _federate(world, case, task, round_idx, change)
    assert 1 in rep.rejected and rep.rejected[1].startswith(f"{task}: ")
    assert "rejected" in rep.missed[1]
    assert 0 not in rep.missed and set(rep.slm_eval) == {0}  # the round went on without it
    key = (task, round_idx)
    if key not in world["refs"]:
        world["refs"][key] = _federate(world, f"ref_{task}_{round_idx}", task, round_idx, _missing)
    ref_server, ref_rep = world["refs"][key]
    assert ref_rep.rejected == {} and 1 in ref_rep.missed
    assert rep.selected == ref_rep.selected and rep.rewards == ref_rep.rewards
    _assert_same(_filter_states(server), _filter_states(ref_server))
    assert server.filters  # the comparison compared something


def test_a_corrupt_reply_is_reported_in_metrics_and_summary(tmp_path: Path) -> None:
    """The config's fault ``kind: corrupt`` through ``lada run``'s own driver."""
    cfg = load_config(None, [*LIGHT, "rounds=1", "eval.initial=false"])
    cfg.faults = [FaultSpec(client=1, round=1, task="distill", kind="corrupt", corruption="nan")]
    records = run(cfg, tmp_path / "r")
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    r1 = lines[-1]
    assert r1["round"] == records[-1]["round"] == 1
    assert "non-finite" in r1["rejected"]["1"] and r1["rejected"]["1"].startswith("distill: ")
    assert "rejected" in r1["missed"]["1"] and r1["rejected"].keys() == {"1"}
    assert "S" not in r1["mean_reward"].get("1", {})  # no reward from the NaN losses
    assert "S" in r1["mean_reward"]["0"]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["rejected"]["1"][0]["round"] == 1
    assert "non-finite" in summary["rejected"]["1"][0]["reason"]


def _finite_states(server: Any) -> bool:
    def finite(v: Any) -> bool:
        if isinstance(v, dict):
            return all(finite(x) for x in v.values())
        if isinstance(v, list | tuple):
            return all(finite(x) for x in v)
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return bool(torch.isfinite(v).all())
        if isinstance(v, float):
            return np.isfinite(v)
        return True

    return finite(_filter_states(server))


@pytest.mark.parametrize("case", ["extreme_features", "huge_losses"])
def test_past_wide_limits_the_filter_guard_contains_the_client(
    case: str, world: dict[str, Any]
) -> None:
    """With limits that let the numbers through, the step that would have raised (or made the
    filters NaN) rejects the client for the round (extreme features), or counts the exploded
    losses as the worst outcome (lada.filter.rewards.finite_losses); the round goes on and the
    filters stay finite."""
    wide = dataclasses.replace(
        world["cfg"],
        limits=dataclasses.replace(world["cfg"].limits, max_abs_value=1e39, max_abs_loss=1e4),
    )
    task, round_idx, change = CASES[case]
    server, rep = _federate(world, f"wide_{case}", task, round_idx, change, wide)
    if case == "extreme_features":
        assert "FilterInputError" in rep.rejected[1] and "rejected" in rep.missed[1]
    else:  # losses up to 1e4 (exp overflows past 709): capped, client 1's picks rewarded lowest
        assert 1 not in rep.missed and rep.rewards[1]
    assert 0 not in rep.missed and 0 in rep.slm_eval and rep.rewards[0]  # the round went on
    assert _finite_states(server) and server.filters[0]
    if case == "extreme_features":  # refused before any filter of client 1 was made
        ref_server, _ = world["refs"].get((task, round_idx)) or _federate(
            world, f"ref_{task}_{round_idx}", task, round_idx, _missing
        )
        _assert_same(_filter_states(server), _filter_states(ref_server))
