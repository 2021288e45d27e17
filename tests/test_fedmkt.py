"""FedMKT's top-k logit distillation and min-CE rule, the vocabulary check, and 1-round tiny
runs of the logit hosts (fedmkt, fedcollm with its server-side KL step), alone and with LaDa."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lada.config import ConfigError, load_config
from lada.data.sample import Sample
from lada.federation.protocol import LogitDistillIns, LogitsRes, decode, encode
from lada.hosts import check_host_config, host_directions
from lada.runner.run import run
from lada.train.logit_distill import (
    TopKLogits,
    VocabularyMismatchError,
    align_teachers,
    check_same_vocab,
    min_ce_teacher,
    topk_distill_loss,
)

FAST = ["rounds=1", "eval.initial=false", "local.optim.max_steps=2", "hosts.fedmkt.top_k=16"]
HOMO = "clients=[{model: slm-s}, {model: slm-s}]"


def _softmax(xs: list[float]) -> list[float]:
    z = sum(math.exp(x) for x in xs)
    return [math.exp(x) / z for x in xs]


def test_topk_distill_loss_matches_a_hand_computation() -> None:
    # one position, vocabulary 4; the teacher's top-2 are ids 1 and 0 with logits 2 and 1
    z = [0.0, 2.0, 1.0, -1.0]
    student = torch.tensor([[z]])  # [B=1, T=1, V=4]
    t_idx = torch.tensor([[[1, 0]]])
    t_val = torch.tensor([[[2.0, 1.0]]])
    p = _softmax([2.0, 1.0])
    # "topk": the student's softmax over the same two ids (logits 2 and 0)
    q = _softmax([2.0, 0.0])
    want = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
    got = topk_distill_loss(student, t_idx, t_val, student="topk")
    assert got.item() == pytest.approx(want, rel=1e-5)
    # "full": the student's log-softmax over the whole vocabulary, at those ids
    lse = math.log(sum(math.exp(x) for x in z))
    want_full = sum(pi * (math.log(pi) - (z[j] - lse)) for pi, j in zip(p, [1, 0], strict=True))
    got_full = topk_distill_loss(student, t_idx, t_val, student="full")
    assert got_full.item() == pytest.approx(want_full, rel=1e-5)
    assert want_full > want > 0
    # a student matching the teacher on the top-k has KL 0 ("topk")
    same = torch.tensor([[[1.0, 2.0, 5.0, 3.0]]])
    assert topk_distill_loss(same, t_idx, t_val).item() == pytest.approx(0.0, abs=1e-7)


def test_topk_distill_loss_masks_padding_and_positions() -> None:
    z = torch.tensor([[[0.0, 2.0, 1.0, -1.0], [3.0, 0.0, 0.0, 0.0]]])  # two positions
    t_idx = torch.tensor([[[1, 0, 0], [2, 3, 9]]])  # id 9: outside the student's vocabulary
    t_val = torch.tensor([[[2.0, 1.0, float("-inf")], [0.5, 0.0, 4.0]]])
    only_first = topk_distill_loss(z, t_idx, t_val, torch.tensor([[True, False]]))
    ref = topk_distill_loss(z[:, :1], t_idx[:, :1, :2], t_val[:, :1, :2])
    assert only_first.item() == pytest.approx(ref.item(), rel=1e-5)
    # second position: id 9 dropped, the rest renormalised over ids 2 and 3
    p = _softmax([0.5, 0.0])
    q = _softmax([0.0, 0.0])
    want2 = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
    both = topk_distill_loss(z, t_idx, t_val)
    assert both.item() == pytest.approx((ref.item() + want2) / 2, rel=1e-5)
    none = topk_distill_loss(z, t_idx, t_val, torch.tensor([[False, False]]))
    assert none.item() == 0.0


@pytest.mark.parametrize("student", ["topk", "full"])
def test_one_gradient_step_lowers_the_distill_loss(student: str) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 32, generator=g).requires_grad_(True)
    t_val, t_idx = torch.randn(2, 5, 32, generator=g).topk(8, dim=-1)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    before = topk_distill_loss(logits, t_idx, t_val, mask, student=student)
    before.backward()
    with torch.no_grad():
        stepped = logits - 1.0 * logits.grad
    after = topk_distill_loss(stepped, t_idx, t_val, mask, student=student)
    assert after.item() < before.item() - 1e-4
    assert torch.isfinite(logits.grad).all()


def test_align_teachers_right_aligns_truncated_sequences() -> None:
    mask = torch.tensor([[False, True, True, True], [True, True, False, False]])
    t0 = (np.array([[5], [6]]), np.array([[1.0], [2.0]], np.float16))  # 2 teacher tokens, 3 own
    idx, val, kd = align_teachers(mask, [t0, None])
    assert kd.tolist() == [[False, False, True, True], [False, False, False, False]]
    assert idx[0, 2:, 0].tolist() == [5, 6] and val[0, 2:, 0].tolist() == [1.0, 2.0]
    assert torch.isinf(val[1]).all()


def test_min_ce_picks_the_lowest_ce_teacher_only_when_it_beats_the_learner() -> None:
    nan = float("nan")
    learner = np.array([2.0, 1.0, 3.0, 0.5, 0.1, 1.0])
    teachers = np.array(
        [
            [1.0, 2.0, nan, 0.4, 0.2, 0.7],  # teacher 0
            [1.5, 0.9, 2.5, nan, 0.3, 0.7],  # teacher 1 (ties with 0 on the last sample)
        ]
    )
    assert min_ce_teacher(learner, teachers).tolist() == [0, 1, 1, 0, -1, 0]
    # one teacher, FedMKT's rule: distil where the teacher's CE is lower
    assert min_ce_teacher(np.array([1.0, 1.0]), np.array([[0.5, 1.5]])).tolist() == [0, -1]
    assert min_ce_teacher(np.array([1.0]), np.zeros((0, 1))).tolist() == [-1]
    # a sample no teacher sent logits for is never distilled
    assert min_ce_teacher(np.array([9.0]), np.array([[nan], [nan]])).tolist() == [-1]


def test_vocabulary_mismatch_is_a_clear_error() -> None:
    check_same_vocab("slm-s", "abc", "llm-xs", "abc")
    with pytest.raises(VocabularyMismatchError, match="token alignment") as e:
        check_same_vocab("slm-s", "abc", "Qwen/Qwen2.5-7B", "def")
    assert "slm-s" in str(e.value) and "Qwen/Qwen2.5-7B" in str(e.value)
    assert isinstance(e.value, ConfigError)


def test_static_vocabulary_check(tmp_path: Path) -> None:
    from lada.models.tokenizer import build_tokenizer

    assert host_directions("fedmkt") == ("S", "L")
    check_host_config(load_config(None, ["host=fedmkt"]))  # zoo models share a tokenizer
    a, b = tmp_path / "a", tmp_path / "b"
    build_tokenizer(["a b c d e f 1 2 3"] * 20, vocab_size=280).save_pretrained(a)
    build_tokenizer(["x y z w 4 5 6 Answer"] * 20, vocab_size=290).save_pretrained(b)
    with pytest.raises(ConfigError, match="zoo model"):
        check_host_config(load_config(None, ["host=fedmkt", f"server.model={a}"]))
    same = ["host=fedmkt", f"server.model={a}", f"clients=[{{model: {a}}}]"]
    check_host_config(load_config(None, same))
    with pytest.raises(VocabularyMismatchError, match="different vocabularies"):
        check_host_config(
            load_config(None, ["host=fedmkt", f"server.model={a}", f"clients=[{{model: {b}}}]"])
        )


def test_logit_payloads_roundtrip_and_subset() -> None:
    top = TopKLogits(
        ids=["a", "b", "c"],
        lengths=np.array([2, 1, 3], np.int32),
        indices=np.arange(12, dtype=np.int16).reshape(6, 2),
        values=np.linspace(-1, 1, 12).astype(np.float16).reshape(6, 2),
        ce=np.array([1.0, 2.0, 3.0], np.float32),
        vocab="f00",
        model="m",
    )
    sub = top.subset(["c", "a"])
    assert sub.lengths.tolist() == [3, 2] and sub.ce.tolist() == [3.0, 1.0]
    assert sub.indices[:, 0].tolist() == [6, 8, 10, 0, 2]
    assert np.array_equal(sub.sample(1)[0], top.sample(0)[0])
    for p in (
        LogitsRes(["a"], "m", "f00", top.lengths, top.indices, top.values, top.ce),
        LogitDistillIns(1, ["a"], [], "m", "f00", top.lengths, top.indices, top.values, top.ce),
    ):
        back = type(p).from_record(decode(encode(p.to_record())))
        for name, v in vars(p).items():
            got = getattr(back, name)
            if isinstance(v, np.ndarray):
                assert got.dtype == v.dtype and np.array_equal(got, v)
            else:
                assert got == v


# ---- the learner step on tiny random models ----------------------------------------------


def _samples(n: int) -> list[Sample]:
    return [
        Sample(
            id=f"p{i}",
            domain="market",
            question=f"plum {i} and pear {i + 2}: total?",
            answer=str(2 * i + 2),
            answer_type="number",
            steps=(f"plum {i}+{i + 2}={2 * i + 2}",),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tiny_pair() -> tuple:
    """Two random tiny causal LMs sharing one tokenizer (no pretraining)."""
    from lada.models.tokenizer import build_tokenizer
    from lada.models.zoo import ModelSpec, make_config

    samples = _samples(6)
    tok = build_tokenizer([s.prompt() + s.target() for s in samples] * 5, vocab_size=300)
    spec = ModelSpec("t", "llama", 32, 1, 2, 2, 64)
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    student = AutoModelForCausalLM.from_config(make_config(spec, tok))
    teacher = AutoModelForCausalLM.from_config(make_config(spec, tok))
    return tok, student, teacher, samples


def test_learner_step_takes_each_sample_from_its_min_ce_teacher(
    tiny_pair: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lada.config.schema import DistillConfig
    from lada.hosts import fedmkt
    from lada.train.logit_distill import compute_topk, vocab_fingerprint
    from lada.train.logprobs import score_texts
    from lada.train.loop import OptimConfig

    tok, student, teacher, samples = tiny_pair
    s3 = samples[:3]
    prompts, golds = [s.prompt() for s in s3], [s.target() for s in s3]
    own = score_texts(student, tok, prompts, golds, max_length=64)["mean_nll"]
    vocab = vocab_fingerprint(tok)
    t0 = compute_topk(teacher, tok, [s.id for s in s3], prompts, golds, 8, 64, "t0", vocab=vocab)
    t1 = TopKLogits(t0.ids, t0.lengths, t0.indices + 1, t0.values, t0.ce.copy(), vocab, "t1")
    # sample 0: both teachers beat the learner, t0 more; sample 1: only t1; sample 2: neither
    t0.ce = (own + np.array([-1.0, 1.0, 1.0])).astype(np.float32)
    t1.ce = (own + np.array([-0.5, -2.0, 0.5])).astype(np.float32)
    seen = {}
    real = fedmkt.learn_from_paths

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(fedmkt, "learn_from_paths", spy)
    cfg = DistillConfig(lambda_cd=1.0, unverified="keep")  # the paths here are arbitrary
    optim = OptimConfig(lr=1e-3, epochs=1, batch_size=4, warmup_steps=0, max_length=64)
    items = [*s3, s3[0]]  # sample 0 twice (two teachers' paths): trained by LM and KD once
    paths = ["plum 1+1=2\nAnswer: 2", "Answer: 9", "pear\nAnswer: 4", "Answer: 7"]
    learner = fedmkt.Learner(student, tok, "s", vocab)
    out, n_kd = fedmkt.learn_from_logits(
        learner, items, {0: t0, 1: t1}, cfg, optim, paths=(paths, ["Answer: 1"] * 4)
    )
    hook = seen["logits"]
    assert n_kd == 2
    assert hook.lm == [True, True, True, False]
    assert np.array_equal(hook.teachers[0][0], t0.sample(0)[0])
    assert np.array_equal(hook.teachers[1][0], t1.sample(1)[0])
    assert hook.teachers[2] is None and hook.teachers[3] is None
    assert (hook.lm_weight, hook.kd_weight) == (0.9, 0.1)
    assert out.num_pairs == 4 and np.all(out.margin != 0)  # λ·L_CD on every (path, own) pair
    assert out.loss_before.shape == (4,) and np.all(np.isfinite(out.loss_after))
    with pytest.raises(VocabularyMismatchError):
        bad = TopKLogits(t0.ids, t0.lengths, t0.indices, t0.values, t0.ce, "other", "t2")
        fedmkt.learn_from_logits(learner, s3, {0: bad}, cfg, optim)


def test_logit_learner_step_lowers_lm_and_distill_loss(tiny_pair: tuple) -> None:
    """Without paths (the host alone) loss_before/after are the gold NLL: the LM term lowers
    it; the KL term alone lowers the KL to the teacher's top-k."""
    from transformers import AutoModelForCausalLM

    from lada.config.schema import DistillConfig
    from lada.hosts.fedmkt import Learner, LogitLoss, learn_from_logits
    from lada.train.batching import collate, encode_pairs
    from lada.train.logit_distill import compute_topk, vocab_fingerprint
    from lada.train.logprobs import target_logits
    from lada.train.loop import OptimConfig

    tok, _, teacher, samples = tiny_pair
    student = AutoModelForCausalLM.from_config(teacher.config)
    prompts, golds = [s.prompt() for s in samples], [s.target() for s in samples]
    vocab = vocab_fingerprint(tok)
    ids = [s.id for s in samples]
    top = compute_topk(teacher, tok, ids, prompts, golds, 8, 64, "t", vocab=vocab)
    top.values = (top.values.astype(np.float32) * 30).astype(np.float16)  # a peaked teacher

    @torch.no_grad()
    def kl() -> float:
        logits, _, mask = target_logits(student, collate(encode_pairs(tok, prompts, golds, 64), 0))
        idx, val, kd = align_teachers(mask, [top.sample(j) for j in range(len(samples))])
        return topk_distill_loss(logits, idx, val, kd).item()

    optim = OptimConfig(lr=1e-2, epochs=3, batch_size=3, warmup_steps=0, max_length=64)
    cfg = DistillConfig()
    before = kl()
    learner = Learner(student, tok, "s", vocab)
    out, n_kd = learn_from_logits(
        learner, samples, {0: top}, cfg, optim, loss=LogitLoss(0.0, 1.0, "all")
    )
    assert n_kd == len(samples) and out.num_pairs == 0
    assert kl() < 0.9 * before
    out, _ = learn_from_logits(
        learner, samples, {0: top}, cfg, optim, loss=LogitLoss(1.0, 0.0, "all")
    )
    assert np.all(out.loss_after < out.loss_before)


# ---- 1-round tiny runs ------------------------------------------------------------------


def _run(tmp_path: Path, tiny: list[str], extra: list[str]) -> dict:
    recs = run(load_config(None, tiny + FAST + extra), tmp_path / "r")
    rec = recs[-1]
    assert rec["round"] == 1 and rec["missed"] == {}, rec["missed"]
    return rec


def _spy_learner(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    from lada.hosts import fedmkt

    calls: list[dict] = []
    real = fedmkt.learn_from_paths

    def spy(model, tok, samples, teacher_paths, own_paths, cfg, optim, **kw):
        hook = kw["logits"]
        calls.append(
            {
                "paths": teacher_paths is not None,
                "lambda": cfg.lambda_cd,
                "weights": (hook.lm_weight, hook.kd_weight),
            }
        )
        return real(model, tok, samples, teacher_paths, own_paths, cfg, optim, **kw)

    monkeypatch.setattr(fedmkt, "learn_from_paths", spy)
    return calls


@pytest.mark.parametrize("plugin", ["none", "lada"])
def test_fedmkt_round_sends_logits(
    tmp_path: Path, tiny_overrides: list[str], plugin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy_learner(monkeypatch)
    rec = _run(tmp_path, tiny_overrides, ["host=fedmkt", f"plugin={plugin}"])
    by_task = rec["bytes"]["by_task"]
    assert by_task["logits"]["up"] > 0 and by_task["distill_logits"]["down"] > 0
    n_clients = len(rec["slm_accuracy"])
    # k = 16 logits of 2 + 2 bytes per target token: far more than the ids asked for
    n_up = sum(sel["L"] for sel in rec["selected"].values())
    assert by_task["logits"]["up"] > 16 * 4 * (10 if plugin == "none" else 1) * n_up
    distill = rec["distill"]
    assert set(distill) == {str(k) for k in range(n_clients)}
    for v in distill.values():
        assert v["slm_loss_after"] == v["slm_loss_after"]  # not NaN
        assert 0 <= v["slm_distilled"] and v["llm_distilled_total"] >= 0
    if plugin == "none":
        assert "generate" not in by_task and "distill" not in by_task  # FedMKT alone: no paths
        assert all(sel == {"S": 30, "L": 30} for sel in rec["selected"].values())
        assert all(v["slm_pairs"] == 0 for v in distill.values())
        assert rec["mean_reward"] == {}
    else:
        assert "generate" in by_task  # LaDa's paths
        assert rec["seconds"]["paths"] > 0
        modes = {m for v in rec["filter_mode"].values() for m in v.values()}
        assert "cold_start" in modes and modes <= {"cold_start", "masked"}  # masked: none taught
        assert all(sel["S"] < 30 and sel["L"] < 30 for sel in rec["selected"].values())
        # logits are on P's gold texts: the 15 unlabelled questions are never candidates
        assert all(m["S"] >= 15 and m["L"] >= 15 for m in rec["masked"].values())
        for k, r in rec["mean_reward"].items():  # every direction with picks is rewarded
            assert {d for d, n in rec["selected"][k].items() if n} <= set(r)
            assert all(isinstance(rec["distill"][k][p], int) for p in ("slm_pairs", "llm_pairs"))
    # the LLM's learner step: SLMs' paths and λ with LaDa, neither alone (clients run the same
    # code in the same process)
    assert calls and all(c["paths"] == (plugin == "lada") for c in calls)
    assert {c["lambda"] for c in calls} == {1.0 if plugin == "lada" else 0.0}
    assert {c["weights"] for c in calls} == {(0.9, 0.1)}


def test_fedmkt_runtime_vocabulary_mismatch_is_rejected(
    tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client whose logits come in another vocabulary (the static check passed) cannot stop
    the federation: its LOGITS reply is rejected, it misses the round, others go on."""
    from lada.federation.client import ClientRole

    real = ClientRole.vocab
    monkeypatch.setattr(ClientRole, "vocab", lambda self: "0" * 16 if self.cid == 1 else real(self))
    cfg = load_config(None, tiny_overrides + FAST + ["host=fedmkt"])
    records = run(cfg, tmp_path / "r")
    r1 = records[-1]
    assert r1["round"] == 1 and set(r1["rejected"]) == {"1"}
    assert r1["rejected"]["1"].startswith("logits: vocabulary '0000")
    assert set(r1["slm_accuracy"]) == {"0", "2"}


@pytest.mark.parametrize("plugin", ["none", "lada"])
def test_fedcollm_distils_the_average_on_the_server(
    tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch, plugin: str
) -> None:
    from lada.hosts import fedcollm

    seen: list = []
    real = fedcollm.server_distill

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append((args[1], out))  # (round context, the FedAvg average, picks)
        return out

    monkeypatch.setattr(fedcollm, "server_distill", spy)
    calls = _spy_learner(monkeypatch)
    rec = _run(tmp_path, tiny_overrides, ["host=fedcollm", f"plugin={plugin}", HOMO])
    assert len(seen) == 1
    averaged, (distilled, losses, stats) = seen[0]
    assert distilled.names == averaged.names
    assert not np.allclose(distilled.flat, averaged.flat)  # the KL step trained the SLM
    assert stats["S"]["distilled"] > 0 and stats["L"]["distilled"] > 0
    by_task = rec["bytes"]["by_task"]
    # FedAvg's average, then the distilled SLM: two weight messages down per client
    assert by_task["set_weights"]["down"] > 2 * 2 * averaged.flat.nbytes
    assert "logits" not in by_task  # logits stay on the server
    for v in rec["distill"].values():
        assert v["slm_distilled_total"] > 0 and v["llm_loss_after"] == v["llm_loss_after"]
    if plugin == "none":
        assert stats["S"]["pairs"] == 0 and rec["mean_reward"] == {}
        assert stats["S"]["distilled"] == 15  # the labelled half of P (docs/testbed.md)
    else:
        assert stats["S"]["distilled"] < 30
        assert all(set(r) == {"S", "L"} for r in rec["mean_reward"].values())
    # both learners got paths (for λ·L_CD and the rewards) exactly with LaDa
    assert [c["paths"] for c in calls] == [plugin == "lada"] * 2
    assert {c["lambda"] for c in calls} == {1.0 if plugin == "lada" else 0.0}


def test_host_transfer_all_keeps_fedmkt_on_all_of_P_and_adds_the_path_step(
    tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = _run(tmp_path / "alone", tiny_overrides, ["host=fedmkt", "plugin=none"])
    calls = _spy_learner(monkeypatch)
    rec = _run(
        tmp_path / "all", tiny_overrides, ["host=fedmkt", "plugin=lada", "host_transfer=all"]
    )
    by_task = rec["bytes"]["by_task"]
    # FedMKT's own exchange is the host alone's, byte for byte: logits of all of P both ways
    for task, way in (("logits", "up"), ("distill_logits", "down")):
        assert by_task[task][way] == alone["bytes"]["by_task"][task][way]
    # and LaDa's path step runs on the picks after it, with rewards for the filters
    assert by_task["generate"]["up"] > 0 and by_task["distill"]["down"] > 0
    assert all(sel["S"] < 30 and sel["L"] < 30 for sel in rec["selected"].values())
    for k, r in rec["mean_reward"].items():  # every direction with picks is rewarded
        assert {d for d, n in rec["selected"][k].items() if n} <= set(r)
    # the LaDa step is the plain host's: unlabelled questions stay candidates of the LLM side
    assert all(m["S"] == 15 for m in rec["masked"].values())
    # the logit learner steps (FedMKT's) saw no paths: L_CD is only in the path step
    assert calls and not any(c["paths"] for c in calls)


def test_host_transfer_all_is_refused_for_path_hosts(tiny_overrides: list[str]) -> None:
    """Refused by the config check itself (no host imported), naming the key."""
    from lada.config.overrides import ConfigError

    for host in ("sft", "fedcot"):
        with pytest.raises(ConfigError, match=f"host {host}'s public transfer is the path step"):
            load_config(None, tiny_overrides + [f"host={host}", "host_transfer=all"])
    with pytest.raises(ConfigError, match="override 'host_transfer=all': config key"):
        load_config(None, tiny_overrides + ["host_transfer=all"])
