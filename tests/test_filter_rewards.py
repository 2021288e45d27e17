"""Reward formulas (spec §3), reward bookkeeping, the cold start and FilterConfig."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lada.filter import (
    FilterConfig,
    RewardTracker,
    aggregate_rewards,
    batch_exp_loss,
    batch_reward,
    kmeans_representatives,
    loss_drop_signal,
    mixed_reward,
    sigmoid,
)
from lada.filter.coldstart import cold_start_count


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny k-means: one thread avoids OpenMP oversubscription on a busy test machine."""
    with threadpool_limits(1):
        yield


LN = math.log


def s(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_sigmoid_values_and_stability() -> None:
    np.testing.assert_allclose(sigmoid([0.0, LN(3), -LN(3)]), [0.5, 0.75, 0.25])
    out = sigmoid([-1000.0, 1000.0])
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [0.0, 1.0])


def test_batch_exp_loss_hand_value() -> None:
    assert batch_exp_loss([0.0, LN(2), LN(3)]) == pytest.approx(2.0)
    assert batch_exp_loss(np.array([LN(5)])) == pytest.approx(5.0)
    with pytest.raises(ValueError):
        batch_exp_loss([])


def test_batch_reward_hand_values() -> None:
    assert batch_reward(2.0, 1.0) == pytest.approx(0.5)
    assert batch_reward(1.0, 2.0) == pytest.approx(-0.5)
    assert batch_reward(3.0, 3.0) == 0.0
    assert batch_reward(4.0, 1.0) == pytest.approx(0.75)


def test_loss_drop_signal_hand_values() -> None:
    g = loss_drop_signal([LN(4), LN(1), LN(2)], [LN(1), LN(4), LN(2)])
    np.testing.assert_allclose(g, [0.75, -0.75, 0.0], atol=1e-12)
    # direct formula on moderate losses
    lb, la = np.array([1.3, 0.2]), np.array([0.4, 0.9])
    direct = (np.exp(lb) - np.exp(la)) / np.maximum(np.exp(lb), np.exp(la))
    np.testing.assert_allclose(loss_drop_signal(lb, la), direct)
    # no overflow for huge losses
    np.testing.assert_allclose(loss_drop_signal([1000.0], [999.0]), [1 - math.exp(-1)])
    with pytest.raises(ValueError):
        loss_drop_signal([1.0, 2.0], [1.0])


def test_mixed_reward_hand_values() -> None:
    np.testing.assert_allclose(mixed_reward(0.0, [0.0]), [0.5])
    # alpha=0.25: 0.25*sigma(ln3) + 0.75*sigma(+-ln3) = 0.1875 + 0.75*{0.25, 0.75}
    r = mixed_reward(LN(3), [-LN(3), LN(3)], alpha=0.25)
    np.testing.assert_allclose(r, [0.375, 0.75])
    np.testing.assert_allclose(mixed_reward(1.0, [5.0], alpha=1.0), [s(1.0)])
    np.testing.assert_allclose(mixed_reward(1.0, [5.0], alpha=0.0), [s(5.0)])


def test_tracker_chains_b_across_steps() -> None:
    tr = RewardTracker(alpha=0.5)
    # step 1: no previous B -> B_prev = mean exp(loss_before) = (4 + 2)/2 = 3; B_1 = 1.5
    r1 = tr.step(loss_after=[LN(2), LN(1)], loss_before=[LN(4), LN(2)])
    assert tr.last_r_batch == pytest.approx(0.5)
    np.testing.assert_allclose(r1, [s(0.5), s(0.5)])  # g = [0.5, 0.5]
    assert tr.b_prev == pytest.approx(1.5)
    # step 2: B_2 = 3 vs B_1 = 1.5 -> r_batch = -0.5; g = 0
    r2 = tr.step(loss_after=[LN(3)], loss_before=[LN(3)])
    assert tr.last_r_batch == pytest.approx(-0.5)
    np.testing.assert_allclose(r2, [0.5 * s(-0.5) + 0.25])
    # state round trip
    tr2 = RewardTracker()
    tr2.load_state_dict(tr.state_dict())
    assert tr2.b_prev == pytest.approx(3.0)


def test_tracker_margin_signal() -> None:
    tr = RewardTracker(alpha=0.5, signal="margin")
    # first step without loss_before: r_batch = 0 (neutral)
    r = tr.step(loss_after=[0.0, 0.0], margins=[LN(3), -LN(3)])
    np.testing.assert_allclose(r, [0.25 + 0.375, 0.25 + 0.125])
    with pytest.raises(ValueError):
        tr.step(loss_after=[0.0])
    with pytest.raises(ValueError):
        RewardTracker().step(loss_after=[0.0])  # loss_drop needs loss_before


def test_aggregate_rewards() -> None:
    ids, r = aggregate_rewards([3, 1, 3, 2], [0.2, 0.5, 0.6, 0.9])
    np.testing.assert_array_equal(ids, [1, 2, 3])
    np.testing.assert_allclose(r, [0.5, 0.9, 0.4])


def _clusters(sizes: list[int], dim: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.eye(dim)[: len(sizes)] * 20.0
    X = np.concatenate([c + rng.normal(size=(n, dim)) for c, n in zip(centers, sizes, strict=True)])
    labels = np.concatenate([np.full(n, i) for i, n in enumerate(sizes)])
    return X, labels


def test_cold_start_spreads_over_clusters_nearest_first() -> None:
    X, labels = _clusters([80, 60, 40, 20])
    idx = kmeans_representatives(X, n_clusters=4, fraction=0.1, seed=0)
    assert idx.size == 20 and np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx], minlength=4)
    np.testing.assert_array_equal(counts, [5, 5, 5, 5])
    for c in range(4):
        members = np.flatnonzero(labels == c)
        d = np.linalg.norm(X[members] - X[members].mean(axis=0), axis=1)
        nearest = set(members[np.argsort(d)[:5]].tolist())
        assert set(idx[labels[idx] == c].tolist()) == nearest


def test_cold_start_counts_and_extra_to_larger_clusters() -> None:
    X, labels = _clusters([80, 60, 40, 20])
    # 0.03*200 = 6 picks over 4 clusters: the two largest get the extra one
    idx = kmeans_representatives(X, n_clusters=4, fraction=0.03, seed=1)
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=4), [2, 2, 1, 1])
    # fraction 0 still gives one per cluster; max_select caps
    assert kmeans_representatives(X, 4, 0.0, 0).size == 4
    assert kmeans_representatives(X, 4, 0.5, 0, max_select=7).size == 7
    assert cold_start_count(200, 10, 0.1, None) == 20
    assert cold_start_count(5, 10, 0.1, None) == 5
    assert cold_start_count(25, 1, 0.1, None) == 3  # half-up rounding of 2.5
    # more clusters than points
    assert kmeans_representatives(X[:3], 10, 0.1, 0).tolist() == [0, 1, 2]


def test_filter_config_defaults_and_validation() -> None:
    c = FilterConfig()
    assert (c.hidden, c.num_layers, c.epochs, c.lr, c.threshold) == (256, 4, 10, 1e-3, 0.5)
    assert c.budget is None and c.min_select == 1 and c.alpha == 0.5
    assert FilterConfig.from_dict({**c.to_dict(), "unknown": 1}) == c
    for bad in (
        {"budget": 0},
        {"min_select": 3, "budget": 2},
        {"alpha": 1.5},
        {"explore_input": "grad"},
        {"num_layers": 1},
    ):
        with pytest.raises(ValueError):
            FilterConfig(**bad)
