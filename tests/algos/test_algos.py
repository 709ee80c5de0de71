"""RAFT, RAFT++, Reinforce++ and PPO against hand-computed values, and a short run of every algorithm."""

import math

import numpy as np
import pytest
import torch

from rollwise.config import RunConfig
from rollwise.algos import ALGORITHMS, algorithm, ppo
from rollwise.algos.critic import ValueCritic, ValueSettings
from rollwise.algos.raft import accepted_advantages, likelihood_loss
from rollwise.algos.reinforce_pp import batch_normalised_advantages
from rollwise.store.checkpoint import read_checkpoint
from rollwise.algos.update import Batch, UpdateSettings, update_policy
from rollwise.policy.models import load_policy
from rollwise.policy.tiny import build_tiny_model
from rollwise.track import read_metrics
from rollwise.train import train
from tests.support.runs import model_parameters, tiny_config


def test_every_registered_algorithm_builds_and_group_relative_ones_check_their_group_size():
    assert [algorithm(name).name for name in ALGORITHMS] == list(ALGORITHMS.names)
    for name in ALGORITHMS:
        settings = dict(algo=name, samples_per_prompt=1)
        if algorithm(name).group_relative:
            with pytest.raises(ValueError, match="at least 2 samples per prompt"):
                RunConfig(**settings)
        else:
            RunConfig(**settings)


def test_raft_accepts_correct_samples_only():
    adv = accepted_advantages(np.array([0.9, 1.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0, 0, 1]))
    assert adv.tolist() == [0.0, 1.0, 0.0]  # a shaped reward of 0.9 on a wrong answer is not accepted
    assert algorithm("raft").accepted_only and algorithm("raft++").accepted_only


def test_raft_loss_is_the_token_mean_negative_log_likelihood():
    logp = torch.log(torch.tensor([[0.5, 0.25], [0.1, 0.9]]))
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, stats = likelihood_loss(logp, logp.detach() + 1.0, torch.tensor([1.0, 1.0]), mask)
    assert float(loss) == pytest.approx(-(math.log(0.5) + math.log(0.25) + math.log(0.1)) / 3)
    assert stats["clip_frac"] == 0.0


def test_reinforce_pp_normalises_over_the_batch_not_the_group():
    rewards = np.array([1.0, 1.0, 0.0, 1.0])  # group 0 is all correct: GRPO would give it 0
    adv = batch_normalised_advantages(rewards, None, np.array([0, 0, 1, 1]), eps=0.0)
    mean, std = 0.75, math.sqrt(((0.25**2) * 3 + 0.75**2) / 3)
    assert adv == pytest.approx((rewards - mean) / std)
    assert adv[0] > 0 and adv[1] > 0
    assert batch_normalised_advantages(np.ones(4), None, None).tolist() == [0.0] * 4


def test_outcome_reward_sits_on_the_last_loss_token():
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    tokens = ppo.outcome_rewards(torch.tensor([2.0, 3.0, 5.0]), mask)
    assert tokens.tolist() == [[0, 0, 2, 0], [0, 0, 0, 3], [0, 0, 0, 0]]


def test_gae_on_a_short_known_sequence():
    gamma, lam = 0.9, 0.8
    r = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    v = torch.tensor([[0.2, 0.4, 0.5, 9.0]])  # position 3 is outside the mask: its value is never used
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = ppo.gae(r, v, mask, gamma, lam)
    d2 = 1.0 - 0.5  # terminal after position 2
    d1 = 0.0 + gamma * 0.5 - 0.4
    d0 = 0.0 + gamma * 0.4 - 0.2
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, a2, 0.0])
    assert ret[0].tolist() == pytest.approx([a0 + 0.2, a1 + 0.4, a2 + 0.5, 0.0])


def test_whiten_and_clipped_value_loss():
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    w = ppo.whiten(torch.tensor([[1.0, 3.0, 100.0]]), mask)
    assert w[0].tolist() == pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)
    values, old, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 1.0]])
    # token 0: unclipped (1-0)^2 = 1, clipped V = 0.7 -> 0.49, max 1; token 1: (0-1)^2 = 1 both
    assert float(ppo.value_loss(values, old, returns, torch.ones(1, 2), value_clip=0.2)) == pytest.approx(0.5)
    # V moved towards the return beyond the clip: the clipped error (larger) counts
    v2 = torch.tensor([[0.0]])
    assert float(ppo.value_loss(v2, torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.ones(1, 1), 0.2)) == \
        pytest.approx(0.5 * 0.8**2)


def _batch(n=4, width=8):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 16, (n, width), generator=gen)
    mask = torch.zeros(n, width - 1)
    mask[:, 4:] = 1.0
    return Batch(ids, torch.ones(n, width, dtype=torch.long), mask, torch.tensor([1.0, 0.0, 1.0, 0.0]))


def test_ppo_update_trains_the_value_head_and_keeps_every_row():
    model = build_tiny_model(1, 32, 2, seed=0)
    critic = ValueCritic(ppo.ValueHead(32), ValueSettings())
    opt = torch.optim.AdamW(list(model.parameters()) + critic.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    settings = UpdateSettings("ppo", 1.0, 0.2, 0.28, 1.0, 2, 1, 8, "stop")
    stats = update_policy(model, opt, sched, _batch(), settings, critic=critic)
    # every row goes through (two have advantage 0 but a value loss)
    assert stats["update_rows"] == 4 and np.isfinite(stats["value_loss"]) and stats["value_loss"] > 0
    assert float(critic.head.linear.weight.detach().abs().sum()) > 0  # moved from its zero initialisation


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["raft", "raft++", "reinforce++", "ppo"])
def test_a_short_run_of_every_algorithm(tmp_path, algo):
    cfg = tiny_config(tmp_path, algo, algo=algo, steps=3, checkpoint_every=1, minibatches=2)
    summary = train(cfg)
    rows = read_metrics(tmp_path / algo / "metrics.jsonl")
    losses = [r["loss"] for r in rows[1:] if r["loss"] is not None]
    assert losses and all(np.isfinite(losses))
    assert summary["total_rollouts"] == 3 * 16
    initial, trained = load_policy(cfg).model.state_dict(), model_parameters(cfg.out_dir)
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)  # the updates moved the policy
    if algo == "ppo":
        assert all(r["value_loss"] is not None for r in rows[1:] if r["loss"] is not None)
        state = read_checkpoint(sorted((tmp_path / algo / "checkpoints").iterdir())[-1])
        assert "critic" in state["components"]


@pytest.mark.slow
def test_ppo_resume_restores_the_critic(tmp_path):
    straight = tiny_config(tmp_path, "straight", algo="ppo", steps=4, checkpoint_every=2)
    train(straight)
    split = straight.replace(out_dir=str(tmp_path / "split"))
    train(split.replace(steps=2))
    train(split, resume=True)
    a = read_checkpoint(sorted((tmp_path / "straight" / "checkpoints").iterdir())[-1])["components"]
    b = read_checkpoint(sorted((tmp_path / "split" / "checkpoints").iterdir())[-1])["components"]
    assert all(torch.equal(a["critic"][k], b["critic"][k]) for k in a["critic"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
