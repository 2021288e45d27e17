"""Contrastive distillation loss and preference choice (spec §4)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from lada.train.losses import (
    PreferencePairs,
    choose_preference,
    contrastive_distill_loss,
    contrastive_margin,
    lada_total_loss,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_hand_computed_value() -> None:
    # margin = 0.1*[(-3 + 4) - (-5 + 4.5)] = 0.15; loss = -log sigma(0.15) = log(1 + e^-0.15)
    t = torch.tensor
    loss = contrastive_distill_loss(t([-3.0]), t([-5.0]), t([-4.0]), t([-4.5]), beta=0.1)
    assert loss.item() == pytest.approx(softplus(-0.15), rel=1e-6)
    m = contrastive_margin(t([-3.0]), t([-5.0]), t([-4.0]), t([-4.5]), beta=0.1)
    assert m.item() == pytest.approx(0.15, rel=1e-6)


def test_beta_and_reduction() -> None:
    pp, pr = torch.tensor([-1.0, -2.0, -8.0]), torch.tensor([-3.0, -2.0, -1.0])
    rp, rr = torch.tensor([-2.0, -2.0, -2.0]), torch.tensor([-2.0, -2.0, -2.0])
    none = contrastive_distill_loss(pp, pr, rp, rr, beta=0.5, reduction="none")
    margins = [0.5 * (1 + 1), 0.0, 0.5 * (-6 - 1)]
    expect = torch.tensor([softplus(-m) for m in margins])
    torch.testing.assert_close(none, expect)
    torch.testing.assert_close(contrastive_distill_loss(pp, pr, rp, rr, 0.5, "sum"), expect.sum())
    torch.testing.assert_close(contrastive_distill_loss(pp, pr, rp, rr, 0.5), expect.mean())
    # beta = 0: every pair at log 2; larger beta sharpens a positive margin
    zero = contrastive_distill_loss(pp, pr, rp, rr, beta=0.0, reduction="none")
    torch.testing.assert_close(zero, torch.full((3,), math.log(2.0)))
    big = contrastive_distill_loss(pp, pr, rp, rr, beta=2.0, reduction="none")
    assert big[0] < none[0] and big[2] > none[2]
    with pytest.raises(ValueError):
        contrastive_distill_loss(pp, pr, rp, rr, reduction="max")  # type: ignore[arg-type]


def test_stable_for_extreme_margins_and_empty_batch() -> None:
    t = torch.tensor
    loss = contrastive_distill_loss(t([-1e4]), t([0.0]), t([0.0]), t([0.0]), beta=1.0)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(1e4)
    pp = torch.zeros(0, requires_grad=True)
    empty = contrastive_distill_loss(pp, torch.zeros(0), torch.zeros(0), torch.zeros(0))
    assert empty.item() == 0.0 and empty.requires_grad


class Bigram(nn.Module):
    """Toy LM: next-token logits from the current token only."""

    def __init__(self, vocab: int = 7, dim: int = 5) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids))


def seq_logprob(model: nn.Module, prompt: list[int], path: list[int]) -> torch.Tensor:
    """log pi(path | prompt) = sum of the path tokens' log-softmax, one position at a time."""
    ids = torch.tensor(prompt + path)
    logits = model(ids)
    total = torch.zeros(())
    for t in range(len(prompt), len(ids)):
        total = total + torch.log_softmax(logits[t - 1], dim=-1)[ids[t]]
    return total


PROMPTS = [[1, 2], [3]]
PREF = [[4, 5, 6], [2, 2]]
REJ = [[6, 6], [5, 4, 1]]


def batch_logprobs(model: nn.Module, paths: list[list[int]]) -> torch.Tensor:
    return torch.stack([seq_logprob(model, p, y) for p, y in zip(PROMPTS, paths, strict=True)])


def test_toy_model_value_and_one_step_raises_preference_gap() -> None:
    torch.manual_seed(0)
    policy = Bigram()
    ref = copy.deepcopy(policy).requires_grad_(False)
    with torch.no_grad():
        ref_pref, ref_rej = batch_logprobs(ref, PREF), batch_logprobs(ref, REJ)
    # policy == ref: margin 0, loss log 2
    loss0 = contrastive_distill_loss(
        batch_logprobs(policy, PREF), batch_logprobs(policy, REJ), ref_pref, ref_rej
    )
    assert loss0.item() == pytest.approx(math.log(2.0), rel=1e-6)
    with torch.no_grad():  # move the policy away from the reference
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    pol_pref, pol_rej = batch_logprobs(policy, PREF), batch_logprobs(policy, REJ)
    loss = contrastive_distill_loss(pol_pref, pol_rej, ref_pref, ref_rej, beta=0.1)
    margins = [
        0.1 * ((pol_pref[i] - ref_pref[i]) - (pol_rej[i] - ref_rej[i])).item() for i in range(2)
    ]
    assert loss.item() == pytest.approx(sum(softplus(-m) for m in margins) / 2, rel=1e-5)
    gap_before = (pol_pref - pol_rej).detach()
    opt = torch.optim.Adam(policy.parameters(), lr=0.05)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        gap_after = batch_logprobs(policy, PREF) - batch_logprobs(policy, REJ)
        loss_after = contrastive_distill_loss(
            batch_logprobs(policy, PREF), batch_logprobs(policy, REJ), ref_pref, ref_rej
        )
    assert torch.all(gap_after > gap_before)
    assert loss_after < loss


def test_reference_gets_no_gradient() -> None:
    pp = torch.tensor([-1.0], requires_grad=True)
    rp = torch.tensor([-2.0], requires_grad=True)
    contrastive_distill_loss(pp, torch.tensor([-3.0]), rp, torch.tensor([-3.0])).backward()
    assert pp.grad is not None and pp.grad.item() < 0
    assert rp.grad is None


def test_total_loss() -> None:
    total = lada_total_loss(torch.tensor(2.0), torch.tensor(0.5), lam=3.0)
    assert total.item() == pytest.approx(3.5)
    assert lada_total_loss(torch.tensor(2.0), torch.tensor(0.5)).item() == pytest.approx(2.5)


TEACHER = ["t0 Answer: A", "same path", "t2 Answer: B", "t3 Answer: C", "t4 Answer: D"]
OWN = ["o0 Answer: B", " same path\n", "o2 Answer: C", "o3 Answer: C", "o4 Answer: A"]


def test_role_based_prefers_teacher_and_skips_identical() -> None:
    pairs = choose_preference(TEACHER, OWN)
    assert isinstance(pairs, PreferencePairs) and len(pairs) == 4
    assert pairs.indices == [0, 2, 3, 4]
    assert pairs.preferred == [TEACHER[i] for i in pairs.indices]
    assert pairs.rejected == [OWN[i] for i in pairs.indices]
    assert all(pairs.teacher_preferred)
    kept = choose_preference(TEACHER, OWN, skip_identical=False)
    assert kept.indices == [0, 1, 2, 3, 4]


def test_correctness_based_with_role_fallback() -> None:
    t_ans = ["A", None, "B", "C", "D"]
    o_ans = ["B", None, "C", "C", "A"]
    gold = ["B", "A", "B", "C", None]
    pairs = choose_preference(TEACHER, OWN, t_ans, o_ans, gold, mode="correctness")
    # 0: only own correct -> own; 2: only teacher correct -> teacher;
    # 3: both correct -> role (teacher); 4: gold unknown -> role (teacher); 1: identical, skipped
    assert pairs.indices == [0, 2, 3, 4]
    assert pairs.teacher_preferred == [False, True, True, True]
    assert pairs.preferred[0] == OWN[0] and pairs.rejected[0] == TEACHER[0]
    neither = choose_preference(["x"], ["y"], ["A"], ["B"], ["C"], mode="correctness")
    assert neither.teacher_preferred == [True]
    spaced = choose_preference(["x"], ["y"], ["A"], [" C "], ["C"], mode="correctness")
    assert spaced.teacher_preferred == [False]


def test_choose_preference_errors() -> None:
    with pytest.raises(ValueError):
        choose_preference(["a"], ["b", "c"])
    with pytest.raises(ValueError):
        choose_preference(["a"], ["b"], mode="correctness")
    with pytest.raises(ValueError):
        choose_preference(["a"], ["b"], ["A"], ["B"], ["A", "B"], mode="correctness")
    with pytest.raises(ValueError):
        choose_preference(["a"], ["b"], mode="votes")  # type: ignore[arg-type]


def test_path_logprob_sum_is_the_spec_and_mean_divides_by_tokens() -> None:
    from lada.train.losses import path_logprob

    total, n = torch.tensor([-12.0, -3.0, -5.0]), torch.tensor([6, 1, 0])
    torch.testing.assert_close(path_logprob(total, n, "sum"), total)
    # the per-token mean; an empty path counts as one token (no division by zero)
    torch.testing.assert_close(path_logprob(total, n, "mean"), torch.tensor([-2.0, -3.0, -5.0]))
    with pytest.raises(ValueError, match="cd_norm"):
        path_logprob(total, n, "max")  # type: ignore[arg-type]


def test_mean_norm_shrinks_a_long_pairs_margin_by_its_length() -> None:
    """The scale issue of L_CD: with "sum" a pair of 50-token paths whose per-token log-probs
    each moved by 0.1 has a 50x larger margin than with "mean"."""
    from lada.train.losses import path_logprob

    n = torch.tensor([50])
    pol_p, ref_p = torch.tensor([-50 * 1.0]), torch.tensor([-50 * 1.1])
    pol_r, ref_r = torch.tensor([-50 * 1.1]), torch.tensor([-50 * 1.0])
    margins = {
        norm: contrastive_margin(
            *(path_logprob(x, n, norm) for x in (pol_p, pol_r, ref_p, ref_r)), beta=0.1
        ).item()
        for norm in ("sum", "mean")
    }
    assert margins["mean"] == pytest.approx(0.1 * 0.2, rel=1e-5)
    assert margins["sum"] == pytest.approx(50 * margins["mean"], rel=1e-5)


def test_floor_stops_pushing_the_rejected_path_below_the_reference() -> None:
    """distill.llm_unlabelled_cd=floor: where the rejected path is already below the reference,
    the loss has no gradient on it (only the preferred path can raise the margin); above the
    reference it is the spec's term."""
    t = torch.tensor
    ref_pref, ref_rej = t([-4.0, -4.0]), t([-4.0, -4.0])
    pol_pref = t([-4.0, -4.0], requires_grad=True)
    pol_rej = t([-5.0, -3.0], requires_grad=True)  # below the reference, above it
    floor = t([True, True])
    loss = contrastive_distill_loss(pol_pref, pol_rej, ref_pref, ref_rej, 0.1, "sum", floor)
    loss.backward()
    assert pol_rej.grad is not None and pol_pref.grad is not None
    assert pol_rej.grad[0].item() == 0.0  # below: left alone
    assert pol_rej.grad[1].item() > 0.0  # above: descending lowers it, as the spec's term
    assert (pol_pref.grad < 0).all()  # the preferred path is always raised
    m = contrastive_margin(pol_pref, pol_rej, ref_pref, ref_rej, 0.1, floor)
    torch.testing.assert_close(m.detach(), t([0.0, -0.1]))
    # without a floor the first pair's margin counts the drop of the rejected path
    spec = contrastive_margin(pol_pref, pol_rej, ref_pref, ref_rej, 0.1)
    torch.testing.assert_close(spec.detach(), t([0.1, -0.1]))
