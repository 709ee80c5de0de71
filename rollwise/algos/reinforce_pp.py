"""Reinforce++ (Hu et al., 2025): REINFORCE with batch-normalised advantages and PPO clipping, no critic.

Without a KL term in the reward each sample's return is its outcome reward, and the advantage is that
reward normalised over the whole batch (mean 0, std 1), not within its prompt's group. So a group whose
samples all succeed still gets a positive advantage when the batch mean is lower: unlike GRPO,
constant groups carry gradient here. The loss is GRPO's clipped, token-mean policy loss.
"""

from __future__ import annotations

import numpy as np


def batch_normalised_advantages(rewards: np.ndarray, acc: np.ndarray, groups: np.ndarray,
                                eps: float = 1e-6) -> np.ndarray:
    """(r - batch mean) / (batch std + eps); zeros for a batch whose rewards are all equal.

    >>> batch_normalised_advantages(np.array([1., 0., 0., 1.]), None, None, eps=0.0).round(3).tolist()
    [0.866, -0.866, -0.866, 0.866]
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.size < 2:
        return np.zeros_like(rewards)
    std = rewards.std(ddof=1)
    if std == 0:
        return np.zeros_like(rewards)
    return (rewards - rewards.mean()) / (std + eps)
