"""The learner's distillation step (lada.train.distill): verification against P's labels."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from lada.config.schema import DistillConfig
from lada.data.sample import Sample
from lada.federation.protocol import LocalTrainIns, Task
from lada.models import build_model, build_tokenizer
from lada.train.distill import learn_from_paths, verified_mask
from lada.train.loop import OptimConfig


def _sample(i: int, answer: str) -> Sample:
    return Sample(
        id=f"p{i}",
        domain="market",
        question=f"Ava buys {i} fig. How many coins?",
        answer=answer,
        answer_type="number",
        steps=(f"fig {i}*2={2 * i}",),
    )


SAMPLES = [_sample(i, str(2 * i)) for i in range(1, 9)]
WRONG = [f"fig {i}*2={2 * i + 1}\nAnswer: {2 * i + 1}" for i in range(1, 9)]
RIGHT = [s.target() for s in SAMPLES]
OWN = [f"fig {i}*3={3 * i}\nAnswer: {3 * i}" for i in range(1, 9)]


@pytest.fixture(scope="module")
def tok():
    corpus = [s.prompt() + t for s, t in zip(SAMPLES * 2, RIGHT + WRONG, strict=True)] + OWN
    return build_tokenizer(corpus * 3, vocab_size=200)


def test_verified_mask_compares_final_answers_and_trusts_unlabelled() -> None:
    unlabelled = _sample(9, "")
    got = verified_mask([SAMPLES[0], SAMPLES[1], unlabelled], [RIGHT[0], WRONG[1], "Answer: 5"])
    assert got.tolist() == [True, False, True]


def _learn(tok, paths: list[str], unverified: str, preference: str = "role"):
    model = build_model("slm-xs", tok, seed=0)
    cfg = DistillConfig(unverified=unverified, preference=preference)  # type: ignore[arg-type]
    optim = OptimConfig(lr=3e-3, batch_size=4, epochs=3, warmup_steps=0, weight_decay=0.0)
    return learn_from_paths(model, tok, SAMPLES, paths, OWN, cfg, optim)


def test_skip_learns_nothing_from_wrong_teacher_paths(tok) -> None:
    kept = _learn(tok, WRONG, "keep")
    skipped = _learn(tok, WRONG, "skip")
    assert kept.num_pairs == len(SAMPLES) and skipped.num_pairs == 0
    drop_kept = float(np.mean(kept.loss_before - kept.loss_after))
    drop_skipped = float(np.mean(skipped.loss_before - skipped.loss_after))
    assert drop_kept > 0.2
    assert abs(drop_skipped) < 1e-6  # no gradient at all, no weight decay


def test_skip_keeps_verified_paths_and_correctness_pairs(tok) -> None:
    mixed = RIGHT[:4] + WRONG[4:]
    out = _learn(tok, mixed, "skip", preference="correctness")
    assert out.num_pairs == 4  # the four wrong-teacher samples: neither path is right
    keep = _learn(tok, mixed, "keep", preference="correctness")
    assert keep.num_pairs == 8
    drop, drop_keep = out.loss_before - out.loss_after, keep.loss_before - keep.loss_after
    assert drop[:4].mean() > 0.2  # the verified paths are learned
    # the wrong paths are only learned through what they share with the right ones
    assert drop[4:].mean() < drop_keep[4:].mean() - 0.2


def test_skip_drops_pairs_whose_rejected_path_is_also_right(tok) -> None:
    own_right = [f"{i}*2={2 * i}\nAnswer: {2 * i}" for i in range(1, 9)]
    model = build_model("slm-xs", tok, seed=0)
    optim = OptimConfig(lr=1e-3, batch_size=4, epochs=1, warmup_steps=0)
    for mode, pairs in (("keep", len(SAMPLES)), ("skip", 0)):
        cfg = DistillConfig(unverified=mode)  # type: ignore[arg-type]
        out = learn_from_paths(model, tok, SAMPLES, RIGHT, own_right, cfg, optim)
        assert out.num_pairs == pairs, mode


def _server(tok, replay: int):
    from lada.config.schema import EvalConfig
    from lada.federation.server import ServerRole, ServerSettings
    from lada.filter.config import FilterConfig

    settings = ServerSettings(
        DistillConfig(
            llm_replay=replay,
            llm_optim=OptimConfig(lr=3e-3, batch_size=4, epochs=10, warmup_steps=0),
        ),
        EvalConfig(),
        FilterConfig(),
    )
    return ServerRole(lambda: (build_model("slm-xs", tok, seed=0), tok), SAMPLES, {}, settings)


def test_replay_picks_the_llms_own_verified_paths_outside_the_taught_ids(tok) -> None:
    server = _server(tok, replay=2)
    own = dict(zip([s.id for s in SAMPLES], RIGHT[:3] + WRONG[3:5] + RIGHT[5:], strict=True))
    # p1 is taught; p2, p3 right; p4, p5 wrong; p6.. right: the first 2 right ones outside p1
    assert server.replay_ids(own, {"p1"}) == ["p2", "p3"]
    assert _server(tok, replay=0).replay_ids(own, set()) == []
    assert server.replay_ids({"p4": WRONG[3]}, set()) == []


def test_gold_replay_draws_labelled_ids_evenly_across_step_counts(tok) -> None:
    """distill.llm_replay_paths=gold: labelled ids outside the taught ones, one per number of
    steps in turn (not the short ones first), the same draw for the same round."""
    from lada.federation.server import ServerRole

    samples = [
        Sample(
            id=f"q{i}",
            domain="market",
            question=f"q {i}?",
            steps=("s",) * (1 + i % 4),
            answer="1",
            answer_type="number",
        )
        for i in range(16)
    ] + [Sample(id="u0", domain="market", question="u?", answer="", answer_type="number")]
    settings = _server(tok, replay=8).settings
    server = ServerRole(lambda: (build_model("slm-xs", tok, seed=0), tok), samples, {}, settings)
    got = server.gold_replay_ids(1, {"q0"})
    assert len(got) == 8 and "q0" not in got and "u0" not in got
    steps = sorted(server.by_id[i].num_steps for i in got)
    assert steps == [1, 1, 2, 2, 3, 3, 4, 4]
    assert got == server.gold_replay_ids(1, {"q0"})
    assert got != server.gold_replay_ids(2, {"q0"})


def test_learn_rehearses_replay_paths_but_reports_only_the_taught_ones(tok) -> None:
    own = dict(zip([s.id for s in SAMPLES], RIGHT, strict=True))
    teacher = {0: (["p1", "p2"], RIGHT[:2])}
    after = {}
    for replay in (0, 6):
        server = _server(tok, replay)
        losses = server.learn(1, teacher, own)
        assert list(losses) == [0] and losses[0].ids == ["p1", "p2"]  # no reward for replay
        after[replay] = server.model(**_enc(tok, SAMPLES[7], RIGHT[7])).loss.item()
    # p8 is among the 6 replayed paths (p3..p8): its own path was trained on
    assert after[6] < after[0] - 0.5, after


def _enc(tok, sample: Sample, path: str) -> dict:

    ids = tok(sample.prompt() + path, return_tensors="pt")["input_ids"]
    return {"input_ids": ids, "labels": ids.clone()}


def _client(tok, tmp_path, replay: int, train: list[Sample], local=None, **settings_kw):
    from lada.config.schema import EvalConfig, LocalTrainConfig
    from lada.federation.client import ClientRole, ClientSettings

    settings = ClientSettings(
        local or LocalTrainConfig(),
        DistillConfig(
            slm_replay=replay,
            lambda_cd=0.0,
            slm_optim=OptimConfig(lr=3e-3, batch_size=4, epochs=10, warmup_steps=0),
        ),
        EvalConfig(),
        **settings_kw,
    )
    load = lambda: (build_model("slm-xs", tok, seed=0), tok)  # noqa: E731
    name = f"c{replay}" + ("r" if settings_kw else "")
    return ClientRole(0, load, train, [], SAMPLES, settings, tmp_path / name)


def test_host_alone_gets_the_same_rehearsal_after_its_local_step(tok, tmp_path, monkeypatch):
    """distill.slm_replay_alone (ours, fairness): the plain host alone ends local training with
    the private samples LaDa's distillation step rehearses in that round, learnt by the same
    function; only hosts whose LaDa step is the path step and that have no exchange alone."""
    import lada.train.distill as distill_mod
    from lada.config import load_config
    from lada.config.schema import LocalTrainConfig
    from lada.hosts import host_class
    from lada.runner.roles import run_plugin

    for overrides, host, expected in [
        (["plugin=none", "distill.slm_replay_alone=true"], "sft", True),
        (["plugin=none"], "sft", False),  # default: the host alone is its own round
        (["plugin=none", "distill.slm_replay_alone=true", "distill.slm_replay=0"], "sft", False),
        (["plugin=lada", "distill.slm_replay_alone=true"], "sft", False),  # LaDa's own step
        (["plugin=none", "distill.slm_replay_alone=true"], "fedcot", False),  # rehearses already
        (["plugin=none", "distill.slm_replay_alone=true"], "fedmkt", False),  # LaDa's doesn't
    ]:
        cfg = load_config(None, overrides)
        got = run_plugin(cfg).rehearses_after_local(cfg.distill, host_class(host)())
        assert got is expected, (overrides, host)

    calls: list[list[str]] = []
    real = distill_mod.learn_from_paths

    def spy(model, tok_, samples, *args, **kw):
        calls.append([s.id for s in samples])
        return real(model, tok_, samples, *args, **kw)

    monkeypatch.setattr(distill_mod, "learn_from_paths", spy)
    private = SAMPLES[4:]
    local = LocalTrainConfig(optim=OptimConfig(lr=1e-3, batch_size=4, max_steps=1))
    lada_side = _client(tok, tmp_path, 4, private, local)
    alone = _client(tok, tmp_path, 4, private, local, rehearse_after_local=True)
    alone.handle(Task.LOCAL_TRAIN, LocalTrainIns(1))
    assert calls == [[s.id for s in lada_side.rehearsal(1)]]  # the same draw as LaDa's step
    plain = _client(tok, tmp_path, 4, private, local)
    plain.handle(Task.LOCAL_TRAIN, LocalTrainIns(1))
    assert len(calls) == 1  # without the flag, local training alone
    x = _enc(tok, SAMPLES[7], RIGHT[7])
    assert alone.model(**x).loss.item() != plain.model(**x).loss.item()


def test_client_rehearses_private_samples_in_its_distillation_step(tok, tmp_path) -> None:
    from lada.federation.protocol import DistillIns

    private = SAMPLES[4:]  # stand-ins for the client's private training samples
    after = {}
    for replay in (0, 4):
        client = _client(tok, tmp_path, replay, private)
        assert len(client.rehearsal(1)) == replay
        assert client.rehearsal(1) == client.rehearsal(1)  # deterministic per round
        res = client.handle(Task.DISTILL, DistillIns(1, ["p1", "p2"], RIGHT[:2]))
        assert res.ids == ["p1", "p2"] and len(res.loss_after) == 2  # only the picks report
        after[replay] = client.model(**_enc(tok, SAMPLES[7], RIGHT[7])).loss.item()
    assert after[4] < after[0] - 0.5, after  # p8 (private) was rehearsed


def test_memory_keeps_verified_slm_paths_rehearses_them_and_survives_a_reload(
    tok, tmp_path
) -> None:
    server = _server(tok, replay=0)
    server.settings.distill.llm_memory = 4
    own = dict(zip([s.id for s in SAMPLES], OWN, strict=True))  # the LLM's own: all wrong
    server.learn(1, {0: (["p1", "p2"], [RIGHT[0], WRONG[1]])}, own)
    assert server.memory == {"p1": RIGHT[0]}  # only the verified SLM path is remembered
    server.learn(2, {1: (["p3"], [RIGHT[2]])}, own)
    assert list(server.memory) == ["p1", "p3"]
    server.save(tmp_path / "ckpt")
    fresh = _server(tok, replay=0)
    fresh.load(tmp_path / "ckpt")
    assert fresh.memory == server.memory
    # round 3 teaches p4 only; p1 and p3 are rehearsed: the loss on p1's path keeps falling
    before = server.model(**_enc(tok, SAMPLES[0], RIGHT[0])).loss.item()
    losses = server.learn(3, {0: (["p4"], [RIGHT[3]])}, own)
    assert losses[0].ids == ["p4"]
    after = server.model(**_enc(tok, SAMPLES[0], RIGHT[0])).loss.item()
    no_mem = _server(tok, replay=0)
    no_mem.load(tmp_path / "ckpt")  # same weights, memory off
    no_mem.settings.distill.llm_memory = 0
    no_mem.learn(3, {0: (["p4"], [RIGHT[3]])}, own)
    after_no_mem = no_mem.model(**_enc(tok, SAMPLES[0], RIGHT[0])).loss.item()
    assert after < before and after < after_no_mem - 0.1, (before, after, after_no_mem)


def test_memory_keeps_slm_paths_on_unlabelled_questions(tok) -> None:
    """The knowledge channel: on a question P has no label for, the role decides and SLM k's
    path is remembered (a labelled one still only when it reaches the gold answer)."""
    from lada.config.schema import EvalConfig
    from lada.federation.server import ServerRole, ServerSettings
    from lada.filter.config import FilterConfig

    public = [*SAMPLES[:2], _sample(9, "")]  # p9: no label
    settings = ServerSettings(
        DistillConfig(llm_replay=0, llm_memory=8, llm_optim=OptimConfig(lr=3e-3, batch_size=4)),
        EvalConfig(),
        FilterConfig(),
    )
    server = ServerRole(lambda: (build_model("slm-xs", tok, seed=0), tok), public, {}, settings)
    own = {s.id: OWN[0] for s in public}
    slm_path = "fig 9*2=18\nAnswer: 18"
    server.learn(1, {0: (["p1", "p2", "p9"], [RIGHT[0], WRONG[1], slm_path])}, own)
    assert server.memory == {"p1": RIGHT[0], "p9": slm_path}


@pytest.mark.parametrize("norm", ["sum", "mean"])
def test_cd_norm_sets_the_scale_of_the_reported_margin(tok, norm: str) -> None:
    """distill.cd_norm: the same step's margin is per path ("sum") or per token ("mean"); with
    "mean" it is about the sum's divided by the paths' length (tokens)."""
    model = build_model("slm-xs", tok, seed=0)
    optim = OptimConfig(lr=3e-3, batch_size=4, epochs=2, warmup_steps=0, weight_decay=0.0)
    cfg = DistillConfig(unverified="keep", cd_norm=norm)  # type: ignore[arg-type]
    out = learn_from_paths(model, tok, SAMPLES, RIGHT, OWN, cfg, optim)
    assert out.num_pairs == len(SAMPLES)
    assert np.all(np.isfinite(out.margin)) and np.mean(out.margin) > 0  # the teacher gained
    if norm == "mean":
        ref = build_model("slm-xs", tok, seed=0)
        long = learn_from_paths(
            ref, tok, SAMPLES, RIGHT, OWN, DistillConfig(unverified="keep"), optim
        )
        n_tokens = len(tok(RIGHT[0])["input_ids"])
        assert np.mean(out.margin) < np.mean(long.margin) / (n_tokens / 3)


@pytest.mark.parametrize("mode", ["contrast", "floor"])
def test_the_llm_step_gets_its_unlabelled_cd_setting_and_gold_rehearsal(tok, monkeypatch, mode):
    """ServerRole.learn hands distill.llm_unlabelled_cd to the step, and with
    llm_replay_paths=gold its rehearsal rows are P's gold paths, not the LLM's own paths."""
    import dataclasses

    import lada.train.distill as distill

    seen: dict = {}
    real = distill.learn_from_paths

    def spy(model, tokenizer, samples, teacher_paths, own_paths, cfg, optim, **kw):
        seen.update(kw, samples=list(samples), teacher=list(teacher_paths))
        return real(model, tokenizer, samples, teacher_paths, own_paths, cfg, optim, **kw)

    monkeypatch.setattr(distill, "learn_from_paths", spy)
    server = _server(tok, replay=2)
    d = dataclasses.replace(server.settings.distill, llm_unlabelled_cd=mode)
    server.settings = dataclasses.replace(server.settings, distill=d)
    own = {s.id: WRONG[i] for i, s in enumerate(SAMPLES)}  # own paths all wrong
    server.learn(1, {0: (["p1"], RIGHT[:1])}, own)
    assert seen["unlabelled_cd"] == mode
    rehearsed = [(s, t) for s, t in zip(seen["samples"], seen["teacher"], strict=True)][1:]
    assert len(rehearsed) == 2 and all(t == s.target() for s, t in rehearsed)
