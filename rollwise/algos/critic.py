"""What an algorithm adds to the policy update beyond its policy loss: a critic (PPO) or nothing.

The update (`rollwise.algos.update`) calls the same hooks for every algorithm, so it has no branch on
whether a critic exists:

    prepare(model, batch)        before the optimiser steps: PPO turns outcome rewards into GAE token
                                 advantages with the old values; without a critic the batch is unchanged
    loss(hidden, micro, mask)    the term added to each micro-batch's policy loss (0 without a critic)

`NoCritic` is the neutral strategy; `ValueCritic` is PPO's value head (rollwise.algos.ppo). The
algorithm's registry entry builds its critic (`Algorithm.build_critic`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from rollwise.algos import ppo


class Critic(Protocol):
    wants_hidden: bool  # the forward pass returns the last hidden states for it
    needs_every_row: bool  # zero-advantage rows still have a gradient (a value loss)

    def parameters(self) -> list: ...

    def prepare(self, model, batch, forward, micro_batches): ...

    def loss(self, hidden, micro, mask) -> tuple[torch.Tensor, float | None]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class NoCritic:
    """Critic-free algorithms: no parameters, no extra loss, every zero-advantage row may be skipped."""

    wants_hidden = False  # the forward pass need not return hidden states
    needs_every_row = False

    def parameters(self) -> list:
        return []

    def prepare(self, model, batch, forward, micro_batches) -> object:
        return batch

    def loss(self, hidden, micro, mask) -> tuple[torch.Tensor, float | None]:
        return torch.zeros((), device=mask.device), None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass(frozen=True)
class ValueSettings:
    gamma: float = 1.0  # GAE discount
    lam: float = 0.95  # GAE lambda
    vf_coef: float = 0.5  # weight of the value loss
    value_clip: float = 0.2  # clip of the value change


class ValueCritic:
    """PPO's critic: a value head on the policy's last hidden state, GAE advantages, the clipped value loss."""

    wants_hidden = True
    needs_every_row = True  # every row has a value loss, advantage 0 or not

    def __init__(self, head: ppo.ValueHead, settings: ValueSettings) -> None:
        self.head, self.settings = head, settings

    def parameters(self) -> list:
        return list(self.head.parameters())

    @torch.no_grad()
    def prepare(self, model, batch, forward, micro_batches):
        """Old values, GAE token advantages (whitened over the batch) and returns."""
        s = self.settings
        values = torch.cat([self.values(forward(model, mb, want_hidden=True)[1]).cpu() for mb in micro_batches(batch)])
        token_rewards = ppo.outcome_rewards(batch.advantages, batch.loss_mask)
        advantages, returns = ppo.gae(token_rewards, values, batch.loss_mask, s.gamma, s.lam)
        advantages = ppo.whiten(advantages, batch.loss_mask)
        return batch.with_extras(advantages, returns=returns, old_values=values)

    def values(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden[:, :-1])

    def loss(self, hidden, micro, mask) -> tuple[torch.Tensor, float | None]:
        device = mask.device
        vloss = ppo.value_loss(self.values(hidden), micro.extras["old_values"].to(device),
                               micro.extras["returns"].to(device), mask, self.settings.value_clip)
        return self.settings.vf_coef * vloss, float(vloss.detach())

    def state_dict(self) -> dict:
        return self.head.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.head.load_state_dict(state)


def no_critic(cfg, model) -> NoCritic:
    return NoCritic()


def value_critic(cfg, model) -> ValueCritic:
    hidden = model.get_input_embeddings().embedding_dim
    head = ppo.ValueHead(hidden, detach=cfg.ppo_critic_detach).to(cfg.device)
    return ValueCritic(head, ValueSettings(cfg.ppo_gamma, cfg.ppo_lambda, cfg.ppo_vf_coef, cfg.ppo_value_clip))
