"""PPO with a value head on the policy and GAE (docs/methods.md section 5).

- The critic is a linear value head on the policy's last hidden state: V(s_t) for the state that
  predicts token t+1. By default it reads detached features (`detach=True`): a linear critic on the
  policy's representation that never pulls on it; `detach=False` trains the trunk with the value loss.
- The outcome reward sits on the last generated token; every other token's reward is 0. GAE with
  `gamma` and `lam` turns rewards and old values into per-token advantages, whitened over the batch's
  loss tokens; returns = raw advantages + old values.
- Value loss: 0.5 * max((V - R)^2, (V_clip - R)^2), V_clip = V_old + clip(V - V_old, +-value_clip),
  token mean; added to the clipped policy loss with weight `vf_coef`.
"""

from __future__ import annotations

import numpy as np
import torch

from rollwise.algos.grpo import masked_mean


class ValueHead(torch.nn.Module):
    """V(s) = w . h + b on the policy's last hidden state; starts at 0 so early advantages equal rewards."""

    def __init__(self, hidden_size: int, detach: bool = True) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)
        self.detach = detach

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.detach:
            hidden = hidden.detach()
        return self.linear(hidden.float()).squeeze(-1)


def outcome_rewards(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards: each row's outcome reward on its last loss token, 0 elsewhere."""
    token_rewards = torch.zeros_like(mask, dtype=torch.float32)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask > 0, positions, torch.full_like(positions, -1)).max(dim=1).values
    rows = torch.nonzero(last >= 0).flatten()
    token_rewards[rows, last[rows]] = rewards[rows].float()
    return token_rewards


def gae(token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each row's loss tokens; returns (advantages, returns).

    The state after a row's last loss token is terminal (value 0). Positions outside the mask get 0.

    >>> adv, ret = gae(torch.tensor([[0., 1.]]), torch.tensor([[0.5, 0.5]]), torch.ones(1, 2), 1.0, 1.0)
    >>> adv.tolist(), ret.tolist()
    ([[0.5, 0.5]], [[1.0, 1.0]])
    """
    mask = mask.float()
    advantages = torch.zeros_like(values, dtype=torch.float32)
    running = torch.zeros(values.shape[0], dtype=torch.float32, device=values.device)
    width = values.shape[1]
    for t in reversed(range(width)):
        next_mask = mask[:, t + 1] if t + 1 < width else torch.zeros_like(running)
        next_value = values[:, t + 1].float() * next_mask if t + 1 < width else torch.zeros_like(running)
        delta = token_rewards[:, t] + gamma * next_value - values[:, t].float()
        running = delta + gamma * lam * next_mask * running
        advantages[:, t] = running * mask[:, t]
    return advantages, (advantages + values.float()) * mask


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean 0 and std 1 over the masked entries; masked-out entries stay 0."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + eps) * mask


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               value_clip: float = 0.2) -> torch.Tensor:
    """Clipped value loss, token mean (PPO's pessimistic max of the clipped and unclipped errors)."""
    clipped = old_values + torch.clamp(values - old_values, -value_clip, value_clip)
    errors = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(errors, mask)


def sample_rewards(rewards: np.ndarray, acc: np.ndarray, groups: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """PPO's per-sample input is the outcome reward itself; the update turns it into token advantages (GAE)."""
    return np.asarray(rewards, dtype=np.float64)
