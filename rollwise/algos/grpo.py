"""GRPO: group-normalised advantages and the clipped, token-mean policy loss (pure functions).

Groups may have different sizes (GVM allocates n_i per prompt), so advantages take a group index
per sample rather than a fixed (prompts x n) reshape. The standard deviation is the sample standard
deviation (Bessel-corrected), as in DeepSeekMath's GRPO and TRL; a group of one sample, or of equal
rewards, gets advantage 0 and so contributes no policy gradient.
"""

from __future__ import annotations

import numpy as np
import torch


def group_advantages(rewards: np.ndarray, groups: np.ndarray, eps: float = 1e-6, scale: bool = True) -> np.ndarray:
    """(r - mean of its group) / (std of its group + eps) for every sample.

    >>> group_advantages(np.array([1., 0., 0., 1.]), np.array([0, 0, 1, 1])).round(3).tolist()
    [0.707, -0.707, -0.707, 0.707]
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    groups = np.asarray(groups)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=rewards)
    means = sums / counts
    centred = rewards - means[inverse]
    if not scale:
        return centred
    sq = np.bincount(inverse, weights=centred**2)
    std = np.sqrt(np.where(counts > 1, sq / np.maximum(counts - 1, 1), 0.0))
    denom = std[inverse] + eps
    # Constant groups and singletons carry no signal: advantage 0, never 0/0.
    informative = (counts[inverse] > 1) & (std[inverse] > 0)
    return np.where(informative, centred / np.where(informative, denom, 1.0), 0.0)


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                        clip_low: float = 0.2, clip_high: float = 0.28) -> tuple[torch.Tensor, dict]:
    """Token-mean PPO-clip loss with separate low and high clip (DAPO's clip-higher).

    logp, old_logp, mask: (batch, tokens); advantages: (batch,) per sample or (batch, tokens) per token.
    Returns the loss and statistics.
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages if advantages.dim() == 2 else advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    loss = masked_mean(per_token, mask)
    with torch.no_grad():
        clip_frac = masked_mean(((ratio < 1.0 - clip_low) & (adv < 0)) | ((ratio > 1.0 + clip_high) & (adv > 0)), mask)
    return loss, {"clip_frac": float(clip_frac)}


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token-mean k3 estimator of KL(policy || reference): exp(r - p) - (r - p) - 1, always >= 0."""
    diff = ref_logp - logp
    return masked_mean(torch.exp(diff) - diff - 1.0, mask)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(torch.float32)
    return (values.to(torch.float32) * mask).sum() / mask.sum().clamp_min(1.0)

