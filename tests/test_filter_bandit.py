"""The EE-Net filter (spec §3): simulated bandit, selection rules, checkpointing, contexts."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from lada.filter import FilterConfig, LearnabilityFilter, select_by_score
from lada.filter.features import SentenceEmbedder, mean_pooled_hidden, pair_context
from lada.filter.nets import ExploitNet

pytestmark = pytest.mark.usefixtures("single_thread")


DIM = 8


def small_config(**kw: object) -> FilterConfig:
    base = {"hidden": 32, "num_layers": 3, "batch_size": 64}
    base.update(kw)
    return FilterConfig(**base)  # type: ignore[arg-type]


def make_pool(seed: int, n: int = 500, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """n contexts from k Gaussian clusters in R^8; returns (X, cluster label)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, DIM))
    labels = rng.integers(0, k, size=n)
    return centers[labels] + rng.normal(size=(n, DIM)), labels


def pay(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cluster 0 pays ~0.9, the others ~0.2 (noisy, clipped to [0, 1])."""
    mean = np.where(labels == 0, 0.9, 0.2)
    return np.clip(mean + rng.normal(scale=0.05, size=labels.shape), 0.0, 1.0)


def run_bandit(filt: LearnabilityFilter, seed: int, rounds: int = 5) -> list[tuple[float, float]]:
    """Per round: (mean reward of the filter's picks, expected mean reward of as many uniformly
    random picks, i.e. the pool's mean expected reward; exact, so the comparison is not noisy)."""
    X, labels = make_pool(seed)
    rng = np.random.default_rng(seed + 100)
    random_mean = float(np.where(labels == 0, 0.9, 0.2).mean())
    out = []
    for t in range(1, rounds + 1):
        idx = filt.select(X, t)
        r = pay(labels[idx], rng)
        out.append((float(r.mean()), random_mean))
        filt.update(X[idx], r)
    return out


@pytest.mark.parametrize("explore_input", ["hidden", "gradient"])
def test_simulated_bandit_beats_random(explore_input: str) -> None:
    for seed in range(3):
        filt = LearnabilityFilter(DIM, small_config(seed=seed, explore_input=explore_input))
        res = run_bandit(filt, seed)
        ours = np.mean([a for a, _ in res[2:]])
        rand = np.mean([b for _, b in res[2:]])
        assert ours > rand + 0.3, (seed, res)


def test_without_exploration_ablation() -> None:
    filt = LearnabilityFilter(DIM, small_config(use_explore=False))
    res = run_bandit(filt, seed=0)
    assert np.mean([a for a, _ in res[2:]]) > np.mean([b for _, b in res[2:]]) + 0.3
    X, _ = make_pool(0)
    x = torch.from_numpy(filt.transform(X))
    with torch.no_grad():
        np.testing.assert_allclose(filt.scores(X), filt.f1(x).double().numpy())
    assert "f2" not in filt.last_train_loss


@pytest.mark.parametrize("explore_input", ["hidden", "gradient"])
def test_score_is_f1_plus_f2_of_phi(explore_input: str) -> None:
    X, labels = make_pool(0)
    filt = LearnabilityFilter(DIM, small_config(explore_input=explore_input))
    filt.update(X[:50], pay(labels[:50], np.random.default_rng(0)))
    got = filt.scores(X)  # a pool: standardised with its own stats (context_norm="round")
    x = torch.from_numpy((X - X.mean(0)) / X.std(0)).float()
    with torch.no_grad():
        s, h = filt.f1.forward_with_hidden(x)
        phi = h if explore_input == "hidden" else filt.f1.output_gradient(x)
        expect = (s + filt.f2(phi)).double().numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)
    assert set(filt.last_train_loss) == {"f1", "f2"}
    assert len(filt.last_train_loss["f1"]) == filt.config.epochs


def test_cold_start_covers_every_cluster() -> None:
    X, labels = make_pool(0, k=5)
    filt = LearnabilityFilter(DIM, small_config(cold_start_clusters=10))
    idx = filt.select(X, 1)
    assert filt.last_mode == "cold_start" and np.isnan(filt.last_scores).all()
    assert idx.size == 50
    assert set(labels[idx].tolist()) == set(range(5))
    counts = np.bincount(labels[idx], minlength=5)
    assert counts.min() >= 5  # 10 k-means clusters spread over 5 true clusters
    capped = LearnabilityFilter(DIM, small_config(budget=7)).select(X, 1)
    assert capped.size == 7


def test_select_by_score_threshold_budget_min_select() -> None:
    u = np.array([0.2, 0.9, 0.6, 0.51, 0.5, 0.7])
    assert select_by_score(u, 0.5).tolist() == [1, 2, 3, 5]  # strict >
    assert select_by_score(u, 0.5, budget=2).tolist() == [1, 5]
    assert select_by_score(u, 0.95, min_select=1).tolist() == [1]
    assert select_by_score(u, 0.95, min_select=3).tolist() == [1, 2, 5]
    assert select_by_score(u, 0.95, min_select=0).tolist() == []
    assert select_by_score(u[:2], 0.95, min_select=5).tolist() == [0, 1]


def test_filter_honours_budget_and_min_select() -> None:
    X, labels = make_pool(1)
    rng = np.random.default_rng(0)
    filt = LearnabilityFilter(DIM, small_config(budget=10))
    filt.update(X, pay(labels, rng))
    idx = filt.select(X, 2)
    assert filt.last_mode == "bandit" and idx.size == 10
    assert np.all(filt.last_scores[idx] >= np.sort(filt.last_scores)[-10])
    # the spec's rule on raw rewards: everything pays 0 -> nothing passes 0.5, the floor keeps
    # the top-3
    low = LearnabilityFilter(
        DIM,
        small_config(min_select=3, epochs=30, select_rule="absolute", reward_target="raw"),
    )
    low.update(X, np.zeros(len(X)))
    idx = low.select(X, 2)
    assert idx.size == 3
    assert set(idx.tolist()) == set(np.argsort(-low.last_scores)[:3].tolist())


def _rounds(filt: LearnabilityFilter, X: np.ndarray, labels: np.ndarray, ts: range) -> list:
    rng = np.random.default_rng(list(ts)[0])
    out = []
    for t in ts:
        idx = filt.select(X, t)
        out.append((idx.copy(), None if filt.last_scores is None else filt.last_scores.copy()))
        filt.update(X[idx], pay(labels[idx], rng))
    return out


@pytest.mark.parametrize("explore_input", ["hidden", "gradient"])
def test_state_dict_round_trip_is_bit_identical(explore_input: str) -> None:
    X, labels = make_pool(2)
    cfg = small_config(seed=3, explore_input=explore_input, max_history=120)
    a = LearnabilityFilter(DIM, cfg)
    _rounds(a, X, labels, range(1, 3))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    cont = _rounds(a, X, labels, range(3, 5))
    b = LearnabilityFilter.from_state_dict(state)
    resumed = _rounds(b, X, labels, range(3, 5))
    for (ia, sa), (ib, sb) in zip(cont, resumed, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(sa, sb)
    assert b.hist_r.size == 120 and b.num_updates == 4


def test_same_seed_same_selection_and_global_rng_untouched() -> None:
    X, labels = make_pool(4)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    sel = [
        _rounds(LearnabilityFilter(DIM, small_config(seed=5)), X, labels, range(1, 4))
        for _ in range(2)
    ]
    assert torch.equal(torch.rand(1), before)
    for (ia, sa), (ib, sb) in zip(*sel, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(sa, sb)


@pytest.mark.parametrize("norm", ["first", "round"])
def test_standardizer_per_round_or_fitted_once(norm: str) -> None:
    X, _ = make_pool(0)
    filt = LearnabilityFilter(DIM, small_config(context_norm=norm))
    filt.select(X, 1)
    np.testing.assert_allclose(filt.transform(X).mean(axis=0), 0.0, atol=1e-5)
    mean = filt.feat_mean.copy()
    shifted = X[:10] + 100.0
    filt.select(shifted, 1)
    if norm == "first":
        np.testing.assert_array_equal(filt.feat_mean, mean)
    else:  # each round's pool is standardised with its own stats
        np.testing.assert_allclose(filt.transform(shifted).mean(axis=0), 0.0, atol=1e-4)
    with pytest.raises(ValueError):
        filt.select(X[:, :3], 1)


def test_output_gradient_matches_autograd() -> None:
    torch.manual_seed(0)
    f1 = ExploitNet(DIM, hidden=16, num_layers=3)
    x = torch.randn(3, DIM)
    phi = f1.output_gradient(x)
    for i in range(3):
        f1.zero_grad()
        f1(x[i : i + 1]).sum().backward()
        expect = torch.cat([f1.head.weight.grad.reshape(-1), f1.head.bias.grad])
        torch.testing.assert_close(phi[i], expect)


def test_compute_rewards_feeds_update() -> None:
    X, _ = make_pool(0)
    filt = LearnabilityFilter(DIM, small_config())
    idx = filt.select(X, 1)
    r = filt.compute_rewards(loss_after=np.full(idx.size, 0.5), loss_before=np.ones(idx.size))
    assert r.shape == (idx.size,) and np.all(r > 0.5)
    filt.update(X[idx], r)
    assert filt.state_dict()["tracker"]["b_prev"] == pytest.approx(np.exp(0.5))


# ----- context features ---------------------------------------------------------------------

WORDS = "what is two plus three four five answer the of".split()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )


def tiny_lm() -> PreTrainedModel:
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = Qwen2Config(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg)


TEXTS = ["what is two plus three", "four", "the answer of two plus five is what"]


def test_mean_pooled_hidden_matches_unbatched_and_restores_state() -> None:
    model, tok = tiny_lm(), tiny_tokenizer()
    tok.padding_side = "left"
    model.train()
    feats = mean_pooled_hidden(model, tok, TEXTS, batch_size=3)
    assert feats.shape == (3, 32) and feats.dtype == np.float32
    assert model.training and tok.padding_side == "left"
    for i, text in enumerate(TEXTS):
        ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            model.eval()
            h = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
        np.testing.assert_allclose(feats[i], h.mean(dim=0).numpy(), atol=1e-5)
    np.testing.assert_allclose(
        mean_pooled_hidden(model, tok, TEXTS, batch_size=1), feats, atol=1e-5
    )
    assert mean_pooled_hidden(model, tok, []).shape == (0, 32)


def test_mean_pooled_hidden_without_pad_token_pads_with_eos() -> None:
    model, tok = tiny_lm(), tiny_tokenizer()
    ref = mean_pooled_hidden(model, tok, TEXTS)
    tok.pad_token = None
    feats = mean_pooled_hidden(model, tok, TEXTS)
    assert tok.pad_token is None
    np.testing.assert_allclose(feats, ref, atol=1e-5)


def test_pair_context_concatenates() -> None:
    a, b = np.ones((4, 3)), np.zeros((4, 2))
    x = pair_context(a, b)
    assert x.shape == (4, 5) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, :3], 1.0)
    with pytest.raises(ValueError):
        pair_context(a, b[:3])


def test_sentence_embedder_local_checkpoint(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertModel(cfg).save_pretrained(tmp_path)  # MiniLM-shaped encoder checkpoint
    tiny_tokenizer().save_pretrained(tmp_path)
    embedder = SentenceEmbedder(tmp_path, batch_size=3)
    emb = embedder.encode(TEXTS)
    assert emb.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    embedder.batch_size = 1  # padding must not change a text's embedding
    np.testing.assert_allclose(embedder.encode(TEXTS), emb, atol=1e-5)
    with pytest.raises(FileNotFoundError):
        SentenceEmbedder(tmp_path / "missing")
