"""The policy update: it moves each sample's log-probability the way its advantage asks; skipping zero-advantage
rows keeps the gradient; minibatch counts; no dropout."""

import copy

import pytest
import torch

from rollwise.algos.reference import FrozenReference
from rollwise.algos.update import Batch, UpdateSettings, minibatch_rows, token_logprobs, update_policy
from rollwise.policy.tiny import build_tiny_model


def _batch(advantages) -> Batch:
    gen = torch.Generator().manual_seed(3)
    n, width = len(advantages), 9
    ids = torch.randint(2, 16, (n, width), generator=gen)
    attn = torch.ones(n, width, dtype=torch.long)
    loss_mask = torch.zeros(n, width - 1)
    for i in range(n):  # prompt of 4 tokens, completions of different lengths
        loss_mask[i, 3 : 4 + i % 5] = 1.0
    return Batch(ids, attn, loss_mask, torch.tensor(advantages, dtype=torch.float32))


def _settings(**kw) -> UpdateSettings:
    base = dict(algo="grpo", temperature=1.0, clip_low=0.2, clip_high=0.28, grad_clip=0.0,
                minibatches=1, updates_per_step=1, micro_batch=3, nonfinite="stop")
    base.update(kw)
    return UpdateSettings(**base)


def _sgd_step(model, batch, settings):
    """Parameters after one plain SGD step of lr 1: their change is minus the gradient."""
    model = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    stats = update_policy(model, opt, sched, batch, settings)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, stats


def test_skipping_zero_advantage_rows_gives_the_same_gradient():
    model = build_tiny_model(1, 32, 2, seed=0)
    batch = _batch([0.0, 1.2, 0.0, -0.7, 0.0, 0.0, 0.5])
    full, full_stats = _sgd_step(model, batch, _settings(skip_zero_rows=False))
    skipped, skip_stats = _sgd_step(model, batch, _settings())
    assert full_stats["update_rows"] == 7 and skip_stats["update_rows"] == 3
    assert skip_stats["loss"] == full_stats["loss"] or abs(skip_stats["loss"] - full_stats["loss"]) < 1e-6
    for name in full:
        torch.testing.assert_close(skipped[name], full[name], rtol=1e-5, atol=1e-7)
    before = model.state_dict()
    assert any(not torch.equal(before[k], skipped[k]) for k in before)  # the step did move the policy


def test_skipping_also_holds_over_minibatches_and_epochs():
    model = build_tiny_model(1, 32, 2, seed=1)
    batch = _batch([0.0, 1.0, -1.0, 0.0, 0.0, 0.3, 0.0, 0.0, -0.3])
    torch.manual_seed(5)
    full, _ = _sgd_step(model, batch, _settings(skip_zero_rows=False, minibatches=2, updates_per_step=2))
    torch.manual_seed(5)
    skipped, _ = _sgd_step(model, batch, _settings(minibatches=2, updates_per_step=2))
    for name in full:
        torch.testing.assert_close(skipped[name], full[name], rtol=1e-4, atol=1e-6)
    before = model.state_dict()
    assert any(not torch.equal(before[k], skipped[k]) for k in before)  # equal because both moved, not neither


def _row_logprobs(model, batch) -> torch.Tensor:
    """Each row's summed log-probability of its loss tokens (its completion)."""
    with torch.no_grad():
        return (token_logprobs(model, batch, 1.0) * batch.loss_mask).sum(dim=1)


def _after_one_step(model, batch, algo, lr=0.05):
    policy = copy.deepcopy(model)
    opt = torch.optim.SGD(policy.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    update_policy(policy, opt, sched, batch, _settings(algo=algo))
    return policy


@pytest.mark.parametrize("algo", ["grpo", "raft", "raft++", "reinforce++"])
def test_an_update_raises_the_log_prob_of_a_positive_advantage_sample(algo):
    model = build_tiny_model(1, 32, 2, seed=0)
    batch = _batch([0.0, 1.0, 0.0])
    rises = _row_logprobs(_after_one_step(model, batch, algo), batch) - _row_logprobs(model, batch)
    assert rises[1] > 1e-4, rises


@pytest.mark.parametrize("algo", ["grpo", "raft++", "reinforce++"])
def test_an_update_lowers_a_negative_advantage_sample_and_separates_it_from_a_positive_one(algo):
    """One SGD step on the token-mean loss moves the parameters along (grad log p(good) - grad log p(bad)):
    to first order log p(bad) falls alone, and log p(good) - log p(bad) grows even when they share weights."""
    model = build_tiny_model(1, 32, 2, seed=0)
    alone = _batch([-1.0])
    change = _row_logprobs(_after_one_step(model, alone, algo), alone) - _row_logprobs(model, alone)
    assert change[0] < -1e-4, change
    pair = _batch([1.0, -1.0, 0.0, 0.5])
    before, after = _row_logprobs(model, pair), _row_logprobs(_after_one_step(model, pair, algo), pair)
    assert after[0] - after[1] > before[0] - before[1] + 1e-4, (before, after)


def test_a_kl_term_with_engine_logprobs_reads_each_rows_own_reference():
    """KL on and the engine's log-probs present (vLLM): every row goes through, and each micro-batch's KL
    compares it with its own reference rows. The reference is the policy itself, so at the first
    optimiser step the KL is exactly 0; reading another micro-batch's rows (an earlier defect rebound the
    row index to the drift sums) would give a positive KL or fail."""
    model = build_tiny_model(1, 32, 2, seed=0)
    batch = _batch([0.0, 1.2, 0.0, -0.7, 0.0, 0.0, 0.5])
    batch.sampler_logp = token_logprobs(model, batch, 1.0).detach()  # the sampler agrees with the policy
    policy = copy.deepcopy(model)
    opt = torch.optim.SGD(policy.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    stats = update_policy(policy, opt, sched, batch, _settings(), reference=FrozenReference(model, kl_coef=0.1))
    assert stats["update_rows"] == 7  # zero-advantage rows included: the KL term has a gradient there
    assert abs(stats["kl"]) < 1e-6
    assert stats["sampler_tokens"] == int(batch.loss_mask.sum()) and stats["sampler_logp_absdiff"] < 1e-6


def test_an_all_zero_batch_still_takes_the_optimiser_step_of_a_zero_gradient():
    model = build_tiny_model(1, 32, 2, seed=0)
    after, stats = _sgd_step(model, _batch([0.0, 0.0, 0.0]), _settings())
    assert stats["update_rows"] == 0 and stats["loss"] == 0.0
    assert all(torch.equal(after[k], v) for k, v in model.state_dict().items())


def test_exactly_the_configured_number_of_minibatches():
    assert [len(r) for r in minibatch_rows(torch.arange(9), 4)] == [3, 2, 2, 2]
    assert sum(len(r) for r in minibatch_rows(torch.arange(9), 4)) == 9
    model = build_tiny_model(1, 32, 2, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    steps = []
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: steps.append(s) or 1.0)
    update_policy(model, opt, sched, _batch([1.0, -1.0] * 4 + [0.5]), _settings(minibatches=4, skip_zero_rows=False))
    assert len(steps) == 1 + 4  # LambdaLR calls once at construction, then once per optimiser step


def test_update_forward_passes_run_without_dropout():
    model = build_tiny_model(1, 32, 2, seed=0)
    model.config.attention_dropout = 0.5
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.5
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    update_policy(model, opt, sched, _batch([1.0, -1.0, 0.5]), _settings(minibatches=2))
    assert seen and not any(seen)
    assert model.training  # restored afterwards


def test_an_all_zero_batch_over_several_minibatches():
    model = build_tiny_model(1, 32, 2, seed=0)
    after, stats = _sgd_step(model, _batch([0.0, 0.0, 0.0, 0.0]), _settings(minibatches=2, updates_per_step=2))
    assert stats["update_rows"] == 0
    assert all(torch.equal(after[k], v) for k, v in model.state_dict().items())
