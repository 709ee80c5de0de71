"""The algorithms' pure functions (this module imports torch; `rollwise.algos` names them without it).

Each algorithm is one `Algorithm` of pure functions, built by name (`rollwise.algos.algorithm(name)`);
the recipe never branches on the name. An entry says:
- `advantages(rewards, acc, groups, eps)`: per-sample advantages (groups may differ in size: GVM);
- `policy_loss(logp, old_logp, advantages, mask, clip_low, clip_high)`: the token-mean policy loss;
- `group_relative`: advantages compare samples of one prompt, so a group needs >= 2 samples;
- `accepted_only`: only verified-correct samples enter the update (RAFT);
- `build_critic(cfg, model)`: what the update adds beyond the policy loss (PPO: a value head and GAE token
  advantages; `rollwise.algos.critic`); the others build `NoCritic`.

    >>> grpo().group_relative, raft_().accepted_only
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rollwise.algos import ppo, raft, reinforce_pp
from rollwise.algos.critic import no_critic, value_critic
from rollwise.algos.grpo import clipped_policy_loss, group_advantages


def _grpo_advantages(rewards, acc, groups, eps=1e-6):
    return group_advantages(rewards, groups, eps=eps)


@dataclass(frozen=True)
class Algorithm:
    name: str
    advantages: Callable
    policy_loss: Callable
    group_relative: bool = False
    accepted_only: bool = False
    build_critic: Callable = no_critic


def grpo() -> Algorithm:
    return Algorithm("grpo", _grpo_advantages, clipped_policy_loss, group_relative=True)


def raft_() -> Algorithm:
    return Algorithm("raft", raft.accepted_advantages, raft.likelihood_loss, accepted_only=True)


def raft_pp() -> Algorithm:
    return Algorithm("raft++", raft.accepted_advantages, clipped_policy_loss, accepted_only=True)


def reinforce_pp_() -> Algorithm:
    return Algorithm("reinforce++", reinforce_pp.batch_normalised_advantages, clipped_policy_loss)


def ppo_() -> Algorithm:
    return Algorithm("ppo", ppo.sample_rewards, clipped_policy_loss, build_critic=value_critic)
