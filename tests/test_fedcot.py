"""FedCoT / distilling step-by-step (lada.hosts.fedcot): two tasks with separate inputs, the
loss (1 − α)·L_label + α·L_rationale, and the SLM's evaluation prompt."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from lada.config.schema import DistillConfig
from lada.data.sample import Sample
from lada.hosts.fedcot import FedCoTHost
from lada.hosts.fedcot_config import FedCoTConfig
from lada.models import build_model, build_tokenizer
from lada.train.batching import collate, encode_pairs
from lada.train.distill import learn_from_paths
from lada.train.loop import OptimConfig
from lada.train.two_task import (
    EXPLAIN_PREFIX,
    PREDICT_PREFIX,
    explain_prompt,
    predict_prompt,
    split_rationale,
    two_task_sft,
    two_tasks,
)


def _sample(i: int) -> Sample:
    return Sample(
        id=f"p{i}",
        domain="market",
        question=f"Ava buys {i} fig. How many coins?",
        answer=str(2 * i),
        answer_type="number",
        steps=(f"fig {i}*2={2 * i}", f"so {2 * i} coins"),
    )


SAMPLES = [_sample(i) for i in range(1, 7)]
PATHS = [s.target() for s in SAMPLES]
MAX_LEN = 96


@pytest.fixture(scope="module")
def tok():
    corpus = [
        PREDICT_PREFIX + EXPLAIN_PREFIX + s.prompt() + p
        for s, p in zip(SAMPLES, PATHS, strict=True)
    ]
    return build_tokenizer(corpus * 3, vocab_size=160)


def test_two_tasks_are_separate_inputs_with_their_own_prefixes_and_targets() -> None:
    prompts = [s.prompt() for s in SAMPLES[:2]] + ["Q?\n", "R?\n"]
    paths = PATHS[:2] + ["Answer: 7", "a line without an answer"]
    t = two_tasks(prompts, paths)
    assert t.predict == [
        (PREDICT_PREFIX + prompts[0], "Answer: 2"),
        (PREDICT_PREFIX + prompts[1], "Answer: 4"),
        (PREDICT_PREFIX + "Q?\n", "Answer: 7"),
    ]
    assert t.explain == [
        (EXPLAIN_PREFIX + prompts[0], "fig 1*2=2\nso 2 coins"),
        (EXPLAIN_PREFIX + prompts[1], "fig 2*2=4\nso 4 coins"),
        (EXPLAIN_PREFIX + "R?\n", "a line without an answer"),
    ]
    # a path with no rationale has no explain task, one with no answer line no predict task
    assert t.predict_rows == [0, 1, 2] and t.explain_rows == [0, 1, 3]
    assert split_rationale("a\nb\nAnswer: 5\n") == ("a\nb", "Answer: 5")
    assert predict_prompt("Q\n") != explain_prompt("Q\n")


def _hand_loss(model, tok, prompts, paths, alpha: float) -> float:
    """(1 − α)·L_label + α·L_rationale by hand: each task one Hugging Face causal-LM loss
    (mean token CE over its targets) on its own batch of prefixed inputs."""
    pad = tok.pad_token_id
    pred = [
        (PREDICT_PREFIX + p, split_rationale(x)[1]) for p, x in zip(prompts, paths, strict=True)
    ]
    expl = [
        (EXPLAIN_PREFIX + p, split_rationale(x)[0]) for p, x in zip(prompts, paths, strict=True)
    ]
    with torch.no_grad():
        label = model(
            **collate(encode_pairs(tok, *zip(*pred, strict=True), MAX_LEN), pad)
        ).loss.item()
        rat = model(
            **collate(encode_pairs(tok, *zip(*expl, strict=True), MAX_LEN), pad)
        ).loss.item()
    return (1 - alpha) * label + alpha * rat


def _step(tok, alpha: float, lambda_cd: float = 0.0):
    """One real distillation step with FedCoT's L_host; per batch: (the host loss, the hand
    value at the same weights, the inputs the host scored)."""
    model = build_model("slm-xs", tok, seed=0)
    cfg = DistillConfig(lambda_cd=lambda_cd)
    optim = OptimConfig(
        lr=3e-3, batch_size=3, epochs=2, warmup_steps=0, weight_decay=0.0, max_length=MAX_LEN
    )
    seen: list[tuple[float, float, list[list[str]]]] = []
    host = FedCoTHost(FedCoTConfig(alpha=alpha))

    def spy_host_loss(cfg_, tok_, preferred):
        inner = host.host_loss(cfg_, tok_, preferred)

        def loss(b):
            scored: list[list[str]] = []
            real = b.score

            def score(ps, ts):
                scored.append(list(ps))
                return real(ps, ts)

            b.score = score
            got = inner(b)
            hand = _hand_loss(model, tok, b.prompts, [preferred[i] for i in b.idx], alpha)
            seen.append((got.item(), hand, scored))
            return got

        return loss

    own = [f"fig {i}*3={3 * i}\nAnswer: {3 * i}" for i in range(1, 7)]
    out = learn_from_paths(model, tok, SAMPLES, PATHS, own, cfg, optim, host_loss=spy_host_loss)
    return seen, out


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_loss_is_one_minus_alpha_label_plus_alpha_rationale(tok, alpha: float) -> None:
    seen, out = _step(tok, alpha)
    assert len(seen) == 4  # 6 samples, batches of 3, 2 epochs
    for got, hand, scored in seen:
        assert got == pytest.approx(hand, rel=1e-5, abs=1e-6)
        # two forward passes: the predict inputs, then the explain inputs, never the plain one
        assert len(scored) == 2
        assert all(p.startswith(PREDICT_PREFIX) for p in scored[0])
        assert all(p.startswith(EXPLAIN_PREFIX) for p in scored[1])
    assert out.loss_after.mean() < out.loss_before.mean()  # it learns the teacher's paths


def test_alpha_zero_and_one_are_the_single_tasks(tok) -> None:
    label_only, _ = _step(tok, 0.0)
    rationale_only, _ = _step(tok, 1.0)
    for got, hand, scored in label_only:
        assert got == pytest.approx(hand, rel=1e-5)
        assert len(scored) == 1 and all(p.startswith(PREDICT_PREFIX) for p in scored[0])
    for got, hand, scored in rationale_only:
        assert got == pytest.approx(hand, rel=1e-5)
        assert len(scored) == 1 and all(p.startswith(EXPLAIN_PREFIX) for p in scored[0])
    # the first batch sees the same weights in both: the two single-task losses differ
    assert label_only[0][0] != pytest.approx(rationale_only[0][0])


def test_lada_adds_lambda_cd_to_the_two_task_loss(tok) -> None:
    """With λ > 0 the step also contrasts the teacher's path with the SLM's own one."""
    seen, out = _step(tok, 0.5, lambda_cd=1.0)
    assert out.num_pairs == len(SAMPLES)
    for got, hand, _ in seen:  # the host's term is unchanged by L_CD
        assert got == pytest.approx(hand, rel=1e-5)
    assert (out.margin != 0).all()


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_two_task_sft_step_loss_is_the_hand_value(tok, alpha: float) -> None:
    """The local step's trainer: one batch of all items, its first step's loss is
    (1 − α)·L_label + α·L_rationale at the initial weights; α = 0 / 1 the single tasks."""
    model = build_model("slm-xs", tok, seed=0)
    prompts = [s.prompt() for s in SAMPLES]
    hand = _hand_loss(model, tok, prompts, PATHS, alpha)
    cfg = OptimConfig(lr=3e-3, batch_size=len(SAMPLES), max_steps=3, max_length=MAX_LEN)
    stats = two_task_sft(model, tok, prompts, PATHS, alpha, cfg)
    assert stats.step_losses[0] == pytest.approx(hand, rel=1e-5)
    assert stats.step_losses[-1] < stats.step_losses[0]
    assert not any(v != v for v in stats.per_sample_loss)  # every item was trained


def test_fedcot_slms_are_evaluated_with_the_predict_prefix(tok, tmp_path) -> None:
    from lada.config.schema import EvalConfig, LocalTrainConfig
    from lada.federation.client import ClientRole, ClientSettings
    from lada.federation.host import Host
    from lada.federation.protocol import EvaluateIns, Task

    asked: list[list[str]] = []
    import lada.eval.generate as gen

    real = gen.generate_paths

    def spy(model, tokenizer, prompts, **kw):
        asked.append(list(prompts))
        return real(model, tokenizer, prompts, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(gen, "generate_paths", spy)  # what the run's generator runs
    try:
        for host in (FedCoTHost(), Host()):
            settings = ClientSettings(
                LocalTrainConfig(), DistillConfig(), EvalConfig(max_new_tokens=4)
            )
            load = lambda: (build_model("slm-xs", tok, seed=0), tok)  # noqa: E731
            client = ClientRole(
                0, load, [], SAMPLES[:2], SAMPLES, settings, tmp_path / host.name, host=host
            )
            client.handle(Task.EVALUATE, EvaluateIns(0))
    finally:
        mp.undo()
    assert asked[0] == [PREDICT_PREFIX + s.prompt() for s in SAMPLES[:2]]
    assert asked[1] == [s.prompt() for s in SAMPLES[:2]]  # other hosts: the plain prompt


@pytest.mark.slow
@pytest.mark.parametrize("plugin", ["none", "lada"])
def test_a_fedcot_round_runs_end_to_end(
    tmp_path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch, plugin: str
) -> None:
    """One fedcot round on the tiny config, alone and with LaDa: each SLM learns its private
    samples, then its picks, through the two tasks (LaDa: only the filter's picks, with
    λ·L_CD pairs), and the SLMs are evaluated with the predict prefix, the LLM without."""
    import lada.eval.generate as gen
    import lada.hosts.fedcot as fc
    import lada.train.two_task as tt
    from lada.config import load_config
    from lada.federation.client import ClientRole
    from lada.runner.run import run

    local: list[list[str]] = []  # the prompts of each local step
    real_sft = tt.two_task_sft

    def spy_sft(model, tokenizer, prompts, *args, **kw):
        local.append(list(prompts))
        return real_sft(model, tokenizer, prompts, *args, **kw)

    taught: list[str] = []  # the prompts each distillation batch's two tasks were made of
    real_batch = fc.two_task_batch_loss

    def spy_batch(score, prompts, *args, **kw):
        taught.extend(prompts)
        return real_batch(score, prompts, *args, **kw)

    asked: dict[str, list[str]] = {}
    real_gen = gen.generate_paths

    def spy_gen(model, tokenizer, prompts, **kw):  # evaluation's prompts
        if kw.get("desc", "").startswith("evaluate"):
            asked.setdefault(kw["desc"], []).extend(prompts)
        return real_gen(model, tokenizer, prompts, **kw)

    picks: dict[int, list[str]] = {}
    real_distill = ClientRole.distill

    def spy_distill(self, ins):
        picks[self.cid] = [self.public[i].prompt() for i in ins.ids]
        return real_distill(self, ins)

    monkeypatch.setattr(tt, "two_task_sft", spy_sft)
    monkeypatch.setattr(fc, "two_task_batch_loss", spy_batch)
    monkeypatch.setattr(gen, "generate_paths", spy_gen)
    monkeypatch.setattr(ClientRole, "distill", spy_distill)
    over = ["host=fedcot", f"plugin={plugin}", "rounds=1", "local.optim.max_steps=3"]
    cfg = load_config(None, tiny_overrides + over)
    recs = run(cfg, tmp_path / "r")
    r1 = recs[-1]
    assert r1["round"] == 1 and r1["missed"] == {}
    n_private = int(cfg.data.split["train_per_client"])
    assert [len(p) for p in local] == [n_private] * len(picks)  # the local step: two tasks
    assert set(picks) == {int(k) for k in r1["selected"]}
    public = {p for ps in picks.values() for p in ps}
    for k, ps in picks.items():
        assert r1["selected"][str(k)]["S"] == len(ps) > 0
        assert len(ps) == 30 if plugin == "none" else len(ps) <= 6  # LaDa: the filter's picks
    # the distillation step's two tasks: the picks (and the private rehearsal), nothing else
    private = {p for ps in local for p in ps}
    assert set(taught) & public and set(taught) <= public | private
    pairs = [v["slm_pairs"] for v in r1["distill"].values()]
    assert all(p > 0 for p in pairs) if plugin == "lada" else all(p == 0 for p in pairs)
    slm = asked["evaluate SLM"]
    assert slm and all(p.startswith(PREDICT_PREFIX) for p in slm)
    llm = [p for d, ps in asked.items() if d != "evaluate SLM" for p in ps]
    assert llm and not any(p.startswith(PREDICT_PREFIX) for p in llm)


def test_fedcot_picks_are_reported_with_their_two_task_loss(tok, tmp_path) -> None:
    """The loss before and after a fedcot distillation step (what LaDa's reward measures) is
    each pick's own (1 − α)·L_label + α·L_rationale on the LLM's path, not its whole path's
    NLL under the plain prompt."""
    from lada.config.schema import EvalConfig, LocalTrainConfig
    from lada.federation.client import ClientRole, ClientSettings
    from lada.federation.protocol import DistillIns, Task

    alpha = 0.3
    d = DistillConfig(
        slm_replay=0,
        lambda_cd=0.0,
        slm_optim=OptimConfig(lr=3e-3, batch_size=3, epochs=3, warmup_steps=0, max_length=MAX_LEN),
    )
    settings = ClientSettings(LocalTrainConfig(), d, EvalConfig())
    load = lambda: (build_model("slm-xs", tok, seed=0), tok)  # noqa: E731
    client = ClientRole(
        0,
        load,
        [],
        [],
        SAMPLES,
        settings,
        tmp_path / "c",
        host=FedCoTHost(FedCoTConfig(alpha=alpha)),
    )
    client.enter_round(1)
    ids = [s.id for s in SAMPLES[:4]]
    hand = [
        _hand_loss(client.model, tok, [s.prompt()], [p], alpha)
        for s, p in zip(SAMPLES[:4], PATHS[:4], strict=True)
    ]
    with torch.no_grad():
        plain = [
            client.model(
                **collate(encode_pairs(tok, [s.prompt()], [p], MAX_LEN), tok.pad_token_id)
            ).loss.item()
            for s, p in zip(SAMPLES[:4], PATHS[:4], strict=True)
        ]
    res = client.handle(Task.DISTILL, DistillIns(1, ids, PATHS[:4]))
    assert res.ids == ids
    assert res.loss_before.tolist() == pytest.approx(hand, rel=1e-4)
    # (the whole path's NLL is another number, even on an untrained model)
    assert max(abs(a - b) for a, b in zip(hand, plain, strict=True)) > 1e-2
    assert (res.loss_after < res.loss_before).all()


def test_lada_eval_asks_in_the_runs_host_prompt(tmp_path, capsys) -> None:
    import json

    import yaml

    from lada.cli import _eval_host, main
    from lada.config import load_config, to_dict

    run = tmp_path / "run"
    (run / "clients" / "client_0").mkdir(parents=True)
    (run / "checkpoints" / "round_001").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(load_config(None, ["host=fedcot"]))))
    slm = str(run / "clients" / "client_0" / "round_001.safetensors")
    assert isinstance(_eval_host(slm, None), FedCoTHost)  # the run's host, for its SLM
    assert _eval_host(str(run / "checkpoints" / "round_001"), None) is None  # the LLM: plain
    assert _eval_host(slm, "none") is None
    assert _eval_host("slm-xs", None) is None  # not a run's checkpoint
    assert isinstance(_eval_host("slm-xs", "fedcot"), FedCoTHost)
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps(SAMPLES[0].to_dict()) + "\n")
    assert main(["eval", "--model", "slm-xs", "--data", str(data), "--host", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--host" in err and "nope" in err and "fedcot" in err
