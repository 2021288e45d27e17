"""Answer extraction, greedy path generation and grouped accuracy."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

import lada.eval.generate as generate_module
from lada.data.extract import canonical_number, extract_answer, is_correct
from lada.data.sample import Sample
from lada.eval.accuracy import accuracy_table, evaluate, group_counts, render_table
from lada.eval.generate import (
    _AnswerStops,
    _cut_after_answer,
    generate_paths,
    greedy_decode,
    hf_generate_paths,
)
from lada.models import build_model, build_tokenizer

PROMPTS = [
    "Max has 3 cards. He buys 4 more. How many now?\n",
    "Copy 7\n",
    "Ann has 12 pens and gives away 5. Then she buys 9 more. How many pens does she have?\n",
    "Q 1\n(A) 2 (B) 3\n",
    "Short\n",
]


@pytest.fixture(scope="module")
def tok():
    corpus = PROMPTS * 3 + [f"Step: {a}+{a}={2 * a}\nAnswer: {2 * a}" for a in range(30)]
    return build_tokenizer(corpus, vocab_size=300)


@pytest.fixture(scope="module")
def model(tok):
    return build_model("slm-xs", tok, seed=0)


# ---- extraction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("Step: 3+4=7\nAnswer: 7", "number", "7"),
        ("Answer: 1,200 apples", "number", "1200"),
        ("Answer: 5.0", "number", "5"),
        ("Answer: -3", "number", "-3"),
        ("Answer: 2.50", "number", "2.5"),
        ("Answer: $12", "number", "12"),
        ("Answer: 4\nmore text\nAnswer: 9", "number", "9"),  # last Answer line
        ("Answer: none", "number", None),
        ("She has 3 + 4 = 7 apples.\n#### 7", "number", "7"),
        ("so 12 minus 5 leaves 7 pens", "number", "7"),
        ("no digits here", "number", None),
        ("Answer: B", "mc", "B"),
        ("Answer: (C)", "mc", "C"),
        ("Answer: D) 20", "mc", "D"),
        ("Answer: A.", "mc", "A"),
        ("Answer: H", "mc", "H"),
        ("Answer: Because", "mc", None),
        ("Answer: Z", "mc", None),
        ("the answer is B", "mc", None),
    ],
)
def test_extract_answer(text, kind, expected):
    assert extract_answer(text, kind) == expected


def test_is_correct_and_canonical_numbers():
    assert canonical_number("-0.0") == "0" and canonical_number("1e3") == "1000"
    assert canonical_number("abc") is None
    assert is_correct("5", "5.0", "number") and is_correct("0.30000000001", "0.3", "number")
    assert not is_correct("6", "5", "number") and not is_correct(None, "5", "number")
    assert is_correct("B", "B", "mc") and not is_correct("C", "B", "mc")


def test_cut_after_answer():
    assert _cut_after_answer("Step: 1\nAnswer: 5\nAnswer: 6") == "Step: 1\nAnswer: 5"
    assert _cut_after_answer("Answer:\n 5\nx") == "Answer:\n 5"
    assert _cut_after_answer("Answer: 5") == "Answer: 5"
    assert _cut_after_answer("no answer\nhere") == "no answer\nhere"


def test_answer_line_stop_marks_rows_done(tok):
    texts = ["Step: 2+2=4\nAnswer: 4\nStep: junk junk", "Step: 1+1=2\nStep: more\nmore more more"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    stop = _AnswerStops(tok)
    first_done = None
    for t in range(max(len(i) for i in ids)):
        if t < len(ids[1]):
            assert not stop.feed(1, ids[1][t : t + 1])
        if t < len(ids[0]) and stop.feed(0, ids[0][t : t + 1]) and first_done is None:
            first_done = t + 1
    assert first_done is not None
    assert tok.decode(ids[0][:first_done]) == "Step: 2+2=4\nAnswer: 4\n"


# ---- generation --------------------------------------------------------------------------------

DOUBLE_PROMPTS = [f"Double {a}\n" for a in range(30)]
DOUBLE_TARGETS = [
    f"Step: {a}+{a}={2 * a}\nAnswer: {2 * a}\nAnswer: {a}\nStep: {a}" for a in range(30)
]


@pytest.fixture(scope="module")
def trained(tok):
    """A tiny model that learned to continue *past* its first Answer line."""
    from lada.train.loop import OptimConfig
    from lada.train.sft import sft

    m = build_model("slm-xs", tok, seed=1)
    cfg = OptimConfig(lr=1e-2, batch_size=30, epochs=4)
    sft(m, tok, DOUBLE_PROMPTS * 10, DOUBLE_TARGETS * 10, cfg)
    return m


def test_generate_paths_order_batching_and_state(trained, tok):
    prompts = [DOUBLE_PROMPTS[3], PROMPTS[2], DOUBLE_PROMPTS[17], PROMPTS[4], DOUBLE_PROMPTS[25]]
    tok.padding_side = "right"
    trained.train()
    batched = generate_paths(
        trained, tok, prompts, max_new_tokens=12, batch_size=3, stop_at_answer=False
    )
    assert trained.training and tok.padding_side == "right"
    trained.eval()
    single = [
        generate_paths(trained, tok, [p], max_new_tokens=12, stop_at_answer=False)[0]
        for p in prompts
    ]
    assert batched == single
    assert len(set(batched)) >= 3  # distinct continuations: the order is checked
    assert generate_paths(trained, tok, prompts, max_new_tokens=12, stop_at_answer=False) == batched
    assert all(tok.pad_token not in t and tok.eos_token not in t for t in batched)
    assert generate_paths(trained, tok, []) == []


@pytest.mark.parametrize("check_every", [1, 8])
def test_greedy_decode_equals_hf_generate(trained, tok, check_every):
    """Our decode loop gives model.generate's greedy tokens (same batches, no answer stop)."""
    prompts = DOUBLE_PROMPTS[:7] + PROMPTS
    reference = hf_generate_paths(trained, tok, prompts, max_new_tokens=20, batch_size=4)
    from lada.train.batching import encode_prompts

    ids = greedy_decode(
        trained,
        encode_prompts(tok, prompts),
        max_new_tokens=20,
        batch_size=4,
        eos_ids={tok.eos_token_id},
        pad_id=tok.pad_token_id,
        check_every=check_every,
    )
    assert all(len(i) <= 20 for i in ids)
    assert tok.batch_decode(ids, skip_special_tokens=True) == reference
    assert (
        generate_paths(trained, tok, prompts, max_new_tokens=20, batch_size=4, stop_at_answer=False)
        == reference
    )


def test_generate_paths_stops_after_answer_line(trained, tok):
    full = generate_paths(trained, tok, DOUBLE_PROMPTS[:6], max_new_tokens=40, stop_at_answer=False)
    cut = generate_paths(trained, tok, DOUBLE_PROMPTS[:6], max_new_tokens=40)
    for f, c in zip(full, cut, strict=True):
        assert f.startswith(c)
        assert c == _cut_after_answer(f)
    assert sum("Answer:" in c and len(c) < len(f) for c in cut) >= 3, (full, cut)


# ---- accuracy -----------------------------------------------------------------------------------


def _samples() -> list[Sample]:
    return [
        Sample("a", "math", "Q1", "7", "number", ("s",), meta={"num_steps": 1}),
        Sample("b", "math", "Q2", "12", "number", ("s", "t"), meta={"num_steps": 2}),
        Sample("c", "science", "Q3", "B", "mc", ("s",), ("x", "y"), meta={"num_steps": 1}),
        Sample("d", "science", "Q4", "A", "mc", ("s", "t"), ("x", "y"), meta={"num_steps": 2}),
        Sample("e", "math", "Q5", "3", "number", ("s",) * 10, meta={"num_steps": 10}),
    ]


def test_evaluate_groups_correctly(monkeypatch, model, tok):
    outputs = {
        "Q1": "Answer: 7",
        "Q2": "Answer: 11",
        "Q3": "Answer: (B)",
        "Q4": "Answer: B",
        "Q5": "3",
    }
    seen = {}

    def fake_generate(model, tokenizer, prompts, *, max_new_tokens, batch_size, **_):
        seen.update(max_new_tokens=max_new_tokens, batch_size=batch_size)
        return [outputs[p.split("\n")[0]] for p in prompts]

    monkeypatch.setattr(generate_module, "generate_paths", fake_generate)  # the run's generator
    result = evaluate(model, tok, _samples(), batch_size=7, max_new_tokens=9)
    assert seen == {"max_new_tokens": 9, "batch_size": 7}
    assert [r["correct"] for r in result.records] == [True, False, True, False, True]
    assert [r["pred"] for r in result.records] == ["7", "11", "B", "B", "3"]
    assert result.records[1]["text"] == "Answer: 11" and result.records[2]["id"] == "c"
    assert result.accuracy == pytest.approx(3 / 5)
    assert result.groups["domain"] == [
        {"domain": "math", "n": 3, "correct": 2, "accuracy": pytest.approx(2 / 3)},
        {"domain": "science", "n": 2, "correct": 1, "accuracy": 0.5},
    ]
    assert [r["num_steps"] for r in result.groups["num_steps"]] == [1, 2, 10]
    assert [r["correct"] for r in result.groups["num_steps"]] == [2, 0, 1]
    both = accuracy_table(result.records, by=["domain", "num_steps"])
    assert len(both) == 5 and sum(r["n"] for r in both) == 5
    assert group_counts(result.records)["num_steps"] == {"1": [2, 2], "2": [0, 2], "10": [1, 1]}
    table = render_table(result.groups["domain"], title="acc")
    assert table.row_count == 2 and [c.header for c in table.columns] == [
        "domain",
        "n",
        "correct",
        "accuracy",
    ]


def test_evaluate_with_real_generation(model, tok):
    result = evaluate(model, tok, _samples()[:2], batch_size=2, max_new_tokens=4)
    assert len(result.records) == 2 and 0.0 <= result.accuracy <= 1.0


def test_generate_paths_merges_lora_for_the_call_only(trained, tok, tmp_path):
    """A LoRA model generates what plain generate gives it; its base weights come back."""
    import torch

    from lada.models.loading import LoraSettings, load_causal_lm

    trained.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    lora = LoraSettings(r=4, alpha=8, dropout=0.0)
    with torch.random.fork_rng(), torch.no_grad():  # the same adapters in any test order
        torch.manual_seed(0)
        model, _ = load_causal_lm(tmp_path, lora=lora, device="cpu")
        for name, p in model.named_parameters():  # non-zero B: merging changes the weights
            if "lora_B" in name:
                p.normal_(0, 0.05)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    prompts = DOUBLE_PROMPTS[:5] + PROMPTS
    reference = hf_generate_paths(model, tok, prompts, max_new_tokens=16, batch_size=4)
    ours = generate_paths(
        model, tok, prompts, max_new_tokens=16, batch_size=4, stop_at_answer=False
    )
    assert ours == reference
    after = dict(model.named_parameters())
    assert all(torch.allclose(after[n], v, atol=1e-6) for n, v in before.items())
    assert not any(getattr(m, "merged", False) for m in model.modules())
