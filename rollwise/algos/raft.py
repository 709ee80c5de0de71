"""RAFT and RAFT++ (docs/methods.md section 3): fine-tune on the accepted (verified correct) samples.

RAFT is rejection-sampling fine-tuning: advantage 1 for a correct sample, 0 otherwise, and the
plain log-likelihood loss on the accepted ones. RAFT++ keeps the same advantages but takes the
PPO importance ratio and clipping, so several optimiser steps on one batch stay near the policy that
sampled it. With one optimiser step per batch the two give the same gradient (the ratio is 1).
Rejected samples never enter the update (`accepted_only` in the registry), so the token mean is over
accepted tokens, as in fine-tuning on the accepted set.
"""

from __future__ import annotations

import numpy as np
import torch

from rollwise.algos.grpo import masked_mean


def accepted_advantages(rewards: np.ndarray, acc: np.ndarray, groups: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """1 for a verified-correct sample, 0 otherwise (acc, never a shaped reward: docs/methods.md section 0).

    >>> accepted_advantages(np.array([0.2, 1.0]), np.array([0.0, 1.0]), np.array([0, 0])).tolist()
    [0.0, 1.0]
    """
    return (np.asarray(acc, dtype=np.float64) > 0).astype(np.float64)


def likelihood_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    clip_low: float = 0.2, clip_high: float = 0.28) -> tuple[torch.Tensor, dict]:
    """Token-mean of -A log p: supervised fine-tuning on the accepted samples (RAFT); no ratio, no clip."""
    adv = advantages if advantages.dim() == 2 else advantages.unsqueeze(-1)
    return masked_mean(-adv * logp, mask), {"clip_frac": 0.0}
