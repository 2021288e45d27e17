"""The filter as EE-Net defines it: a drifting simulated bandit (where the within-round target
option follows the samples and the spec's raw target follows the round), decision-time
residuals, per-round contexts, trained-only rewards, and the filter's numbers in metrics.jsonl
(the real 2-round run: tests/test_federation.py, test_filter_numbers_in_metrics)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lada.filter import FilterConfig, LearnabilityFilter
from lada.filter.config import LEGACY_RULE, ROUND_Z_RULE
from lada.filter.nets import ExploitNet
from lada.filter.rewarding import reward_picks
from lada.filter.simulate import DriftingBandit
from lada.filter.targets import round_reward_target, round_z

pytestmark = pytest.mark.usefixtures("single_thread")


def small(**kw: object) -> FilterConfig:
    return FilterConfig(**{"hidden": 32, "num_layers": 3, "budget": None, **kw})  # type: ignore[arg-type]


def simulate(capacity: float, seed: int, **kw: object) -> list[dict[str, float]]:
    sim = DriftingBandit(capacity=capacity, seed=seed)
    return sim.run(LearnabilityFilter(sim.dim, small(seed=seed, **kw)), rounds=6)


@pytest.mark.parametrize("capacity", [0.3, 0.7])
def test_drifting_bandit_round_z_option_beats_random_without_a_cap(capacity: float) -> None:
    res = simulate(capacity, seed=0, **ROUND_Z_RULE)
    bandit = res[1:]  # round 1 is the cold start
    shares = [r["share"] for r in bandit]
    assert all(0.1 <= s <= 0.9 for s in shares), shares  # a meaningful share, no cap
    assert len({round(s, 2) for s in shares}) > 1, shares  # ... that varies
    lift = np.mean([r["lift"] for r in res[2:]])
    assert lift > 0.2, res  # picks ~0.3 more learnable than random picks of the same size
    # the simulated reward drifts more from round to round than it spreads within a round
    means = np.array([r["mean_reward"] for r in res])
    assert np.abs(np.diff(means)).mean() > 3 * np.mean([r["reward_std"] for r in res])


@pytest.mark.parametrize("capacity", [0.3, 0.7])
def test_drifting_bandit_spec_rule_follows_the_round_without_a_cap(capacity: float) -> None:
    """The spec's rule (u > 0.5 on r_i itself, the default) compares rounds: when the simulated
    learner's round-wide gain moves, every u moves with it, so without a cap it picks all of P
    or (min_select) almost nothing: a budget (top by u) is what makes it rank."""
    res = simulate(capacity, seed=0)
    shares = [r["share"] for r in res[1:]]
    assert sum(s > 0.9 or s < 0.1 for s in shares) >= 3, shares
    capped = simulate(capacity, seed=0, budget=60)
    assert all(r["share"] == pytest.approx(60 / 300) for r in capped[1:])


@pytest.mark.parametrize("capacity", [0.3, 0.7])
def test_drifting_bandit_old_rule_fails(capacity: float) -> None:
    res = simulate(capacity, seed=0, **LEGACY_RULE)
    shares = [r["share"] for r in res[1:]]
    # all or nothing: u > 0.5 on raw rewards follows the round's drift, not the samples
    assert sum(s > 0.9 or s < 0.1 for s in shares) >= 3, shares
    assert np.mean([r["lift"] for r in res[2:]]) < 0.1, res


def test_round_targets_remove_the_round_wide_part() -> None:
    r = np.array([0.61, 0.62, 0.64, 0.60])
    y = round_reward_target(r)
    np.testing.assert_allclose(round_reward_target(r + 0.2), y)  # a round-wide shift: no change
    assert y.std() > 0.15 and abs(y.mean() - 0.5) < 0.05
    assert np.argmax(y) == 2
    np.testing.assert_array_equal(round_reward_target([0.7]), [0.5])
    np.testing.assert_array_equal(round_z([1.0, 1.0, 1.0]), [0.0, 0.0, 0.0])


@pytest.mark.parametrize("residual", ["decision", "refit"])
def test_explore_net_learns_the_decision_time_residual(residual: str) -> None:
    sim = DriftingBandit(seed=1)
    filt = LearnabilityFilter(sim.dim, small(residual=residual, epochs=5))
    stored = []
    for t in (1, 2):
        idx = filt.select(sim.contexts(t), t)
        decided = filt.pending.f1[idx].copy()
        with torch.no_grad():  # what f1 said when it picked: recompute it independently
            x = torch.from_numpy(filt.transform(sim.contexts(t))[idx])
            np.testing.assert_allclose(decided, filt.f1(x).numpy(), rtol=1e-6)
        lb, la = sim.losses(t, idx)
        filt.update_picks(idx, filt.compute_rewards(la, lb))
        stored.append(decided)
    phi, target = filt.explore_targets()
    with torch.no_grad():
        now = filt.f1(torch.from_numpy(filt.hist_x)).numpy()
    y = filt.hist_y
    if residual == "decision":
        np.testing.assert_allclose(filt.hist_f1, np.concatenate(stored))  # kept, never refit
        np.testing.assert_allclose(target.numpy(), y - np.concatenate(stored), rtol=1e-6)
        assert np.abs(target.numpy() - (y - now)).max() > 1e-3  # not the in-sample residual
        np.testing.assert_array_equal(
            phi.numpy()[: stored[0].size], filt.hist_phi[: stored[0].size]
        )
    else:
        np.testing.assert_allclose(target.numpy(), y - now, rtol=1e-5, atol=1e-6)


def test_per_round_standardisation_removes_the_round_signal() -> None:
    """A classifier tells the round from x standardised once; not from x standardised per
    round (the simulated contexts drift by an affine map, like contexts of changing models)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    sim = DriftingBandit(seed=2)
    acc = {}
    for norm in ("first", "round"):
        filt = LearnabilityFilter(sim.dim, small(context_norm=norm))
        xs, rounds = [], []
        for t in (1, 2):
            filt.select(sim.contexts(t), t)
            xs.append(filt.pending.x)
            rounds += [t] * sim.n
        clf = LogisticRegression(max_iter=500)
        acc[norm] = cross_val_score(clf, np.concatenate(xs), rounds, cv=3).mean()
    assert acc["first"] > 0.95 and acc["round"] < 0.6, acc


def test_only_trained_picks_are_rewarded() -> None:
    sim = DriftingBandit(seed=3)
    filt = LearnabilityFilter(sim.dim, small())
    idx = filt.select(sim.contexts(1), 1)
    lb, la = sim.losses(1, idx)
    ids = [f"p{i}" for i in idx]
    trained = np.zeros(idx.size, dtype=np.uint8)
    trained[::3] = 1
    losses = SimpleNamespace(
        ids=ids, loss_before=lb, loss_after=la, margin=np.zeros(idx.size), trained=trained
    )
    pos = {f"p{i}": int(i) for i in range(sim.n)}
    out = reward_picks(filt, losses, pos)
    assert out["n"] == trained.sum() and out["n_untrained"] == idx.size - trained.sum()
    np.testing.assert_array_equal(filt.hist_x, filt.pending.x[idx[::3]])
    assert out["n_selected"] == idx.size and out["score_std"] is None  # cold start: no u
    none = SimpleNamespace(**{**losses.__dict__, "trained": np.zeros(idx.size, np.uint8)})
    before = filt.hist_r.size
    assert reward_picks(filt, none, pos)["n"] == 0 and filt.hist_r.size == before


def test_gradient_phi_of_several_layers_matches_autograd() -> None:
    net = ExploitNet(5, hidden=6, num_layers=3)
    x = torch.randn(4, 5)
    g = net.param_gradient(x, 2)
    assert g.shape == (4, 7 + 6 * 6 + 6)
    for i in range(4):
        net.zero_grad()
        net(x[i : i + 1]).sum().backward()
        lin = net.linear_layers(2)
        expect = torch.cat([p.grad.flatten() for m in lin for p in m.parameters()])
        torch.testing.assert_close(g[i], expect)
    torch.testing.assert_close(net.param_gradient(x, 1), net.output_gradient(x))
    assert net.param_gradient(x, 0).shape[1] == sum(p.numel() for p in net.parameters())
    with pytest.raises(ValueError, match="explore_max_dim"):
        LearnabilityFilter(64, FilterConfig(explore_grad_layers=2, explore_max_dim=1000))
    filt = LearnabilityFilter(5, small(explore_grad_layers=2))
    filt.update(np.random.default_rng(0).normal(size=(20, 5)), np.linspace(0, 1, 20))
    assert filt.hist_phi.shape == (20, 33 + 32 * 32 + 32)


def test_frozen_contexts_are_the_first_pools_every_round() -> None:
    sim = DriftingBandit(seed=4)
    filt = LearnabilityFilter(sim.dim, small(context_source="frozen"))
    seen = []
    for t in (1, 2, 3):
        idx = filt.select(sim.contexts(t), t)
        seen.append(filt.pending.x.copy())
        lb, la = sim.losses(t, idx)
        filt.update_picks(idx, filt.compute_rewards(la, lb))
    np.testing.assert_array_equal(seen[0], seen[2])  # x cannot tell the rounds apart
    np.testing.assert_array_equal(filt.frozen_x, sim.contexts(1))
    again = LearnabilityFilter.from_state_dict(filt.state_dict())
    np.testing.assert_array_equal(again.frozen_x, filt.frozen_x)
    with pytest.raises(ValueError, match="context_source=frozen"):
        filt.select(sim.contexts(4)[:10], 4)
