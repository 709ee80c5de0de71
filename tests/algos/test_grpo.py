"""GRPO advantages and losses against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from rollwise.algos.grpo import clipped_policy_loss, group_advantages, kl_k3, masked_mean


def test_group_advantages_hand_computed():
    # group 0: rewards 1,0,0 -> mean 1/3, sample std sqrt(1/3); group 1: 1,1 (constant) -> 0
    adv = group_advantages(np.array([1.0, 0.0, 0.0, 1.0, 1.0]), np.array([0, 0, 0, 1, 1]), eps=0.0)
    std = math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2)
    assert adv[:3] == pytest.approx([(2 / 3) / std, -(1 / 3) / std, -(1 / 3) / std])
    assert adv[3:] == pytest.approx([0.0, 0.0])


def test_group_advantages_variable_sizes_and_singletons():
    adv = group_advantages(np.array([0.0, 1.0, 0.5, 3.0]), np.array([7, 7, 2, 9]), eps=0.0)
    # group 7: mean .5, sample std sqrt(.5) -> -/+ .5/sqrt(.5); groups 2 and 9 have one sample -> 0
    assert adv == pytest.approx([-0.5 / math.sqrt(0.5), 0.5 / math.sqrt(0.5), 0.0, 0.0])


def test_group_advantages_unscaled_is_centred():
    adv = group_advantages(np.array([1.0, 0.0, 0.0, 0.0]), np.zeros(4, dtype=int), scale=False)
    assert adv == pytest.approx([0.75, -0.25, -0.25, -0.25])


def test_clipped_loss_at_ratio_one_is_minus_mean_advantage():
    logp = torch.log(torch.tensor([[0.5, 0.25], [0.1, 0.9]]))
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, stats = clipped_policy_loss(logp, logp, torch.tensor([2.0, -1.0]), mask)
    # tokens: -(2), -(2), -(-1) over 3 tokens
    assert float(loss) == pytest.approx((-2 - 2 + 1) / 3)
    assert stats["clip_frac"] == 0.0


def test_clipped_loss_clips_high_and_low_separately():
    old = torch.zeros(1, 4)
    # ratios 1.5 (A>0, clipped at 1.28), 0.5 (A>0, not clipped: min picks .5), 1.5 (A<0: -1.5 unclipped), 0.5 (A<0: clip .8)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]]))
    loss_pos, _ = clipped_policy_loss(logp[:, :2], old[:, :2], torch.tensor([1.0]), torch.ones(1, 2), 0.2, 0.28)
    assert float(loss_pos) == pytest.approx(-(1.28 + 0.5) / 2)
    loss_neg, stats = clipped_policy_loss(logp[:, 2:], old[:, 2:], torch.tensor([-1.0]), torch.ones(1, 2), 0.2, 0.28)
    assert float(loss_neg) == pytest.approx((1.5 + 0.8) / 2)
    assert stats["clip_frac"] == pytest.approx(0.5)


def test_clipped_loss_gradient_vanishes_when_clipped():
    logp = torch.log(torch.tensor([[2.0]])).requires_grad_(True)
    loss, _ = clipped_policy_loss(logp, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1))
    loss.backward()
    assert float(logp.grad) == 0.0


def test_kl_k3_hand_computed_and_zero_at_equality():
    logp = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    # exp(r - p) - (r - p) - 1 with r - p = log(.5)
    d = math.log(0.5)
    assert float(kl_k3(logp, ref, torch.ones(1, 1))) == pytest.approx(math.exp(d) - d - 1)
    assert float(kl_k3(logp, logp, torch.ones(1, 1))) == 0.0


def test_masked_mean_ignores_masked_tokens():
    assert float(masked_mean(torch.tensor([[1.0, 100.0]]), torch.tensor([[1.0, 0.0]]))) == 1.0
