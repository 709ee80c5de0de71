"""Reward shaping after verification: RPO's length-aware reward and DAPO's soft overlong punishment.

    verified reward r (acc or score) --length-aware (correct answers, per group)--> + overlong penalty

Shaping changes `Group.rewards` only, never `Group.acc`: selectors, allocators, the dynamic-sampling
filter and every accuracy metric keep reading what the verifier said. A group's length is the whole
answer, prefix + suffix tokens (partial rollouts), and the length-aware reward needs the whole group,
so shaping runs after GVM's pre-samples are merged into their group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rollwise.rollout.partial import answer_lengths, length_aware_rewards, overlong_penalty


@dataclass(frozen=True)
class RewardShaping:
    """Which shapings a run applies (both off: rewards pass through unchanged).

    >>> from types import SimpleNamespace as S
    >>> shaping = RewardShaping(length_aware=False, alpha=0.01, reference="all", max_len=4, overlong_buffer=2)
    >>> group = S(samples=[S(prefix_ids=(), completion_ids=[5, 1]), S(prefix_ids=(7, 7), completion_ids=[5])],
    ...           acc=np.array([1.0, 1.0]), rewards=np.array([1.0, 1.0]))
    >>> shaping.rewards(group).tolist()   # 3 tokens: half-way down the 2-token ramp
    [1.0, 0.5]
    """

    length_aware: bool
    alpha: float
    reference: str
    max_len: int
    overlong_buffer: int = 0
    overlong_factor: float = 1.0

    @classmethod
    def identity(cls) -> "RewardShaping":
        """No shaping: rewards pass through unchanged."""
        return cls(length_aware=False, alpha=0.01, reference="all", max_len=0)

    @classmethod
    def from_config(cls, cfg, max_new_tokens: int) -> "RewardShaping":
        if cfg.overlong_buffer > max_new_tokens:
            raise ValueError(f"overlong_buffer={cfg.overlong_buffer} exceeds the run's max_new_tokens={max_new_tokens}")
        return cls(cfg.length_reward, cfg.rpo_length_alpha, cfg.rpo_length_reference, max_new_tokens,
                   cfg.overlong_buffer, cfg.overlong_penalty)

    @property
    def active(self) -> bool:
        return self.length_aware or self.overlong_buffer > 0

    def rewards(self, group) -> np.ndarray:
        """The group's shaped rewards (a new array; its acc and rewards untouched)."""
        if not self.active or len(group.samples) == 0:
            return np.asarray(group.rewards, dtype=np.float64).copy()
        lengths = answer_lengths(group.samples)
        rewards = group.rewards
        if self.length_aware:
            rewards = length_aware_rewards(rewards, group.acc, lengths, np.zeros(len(lengths), dtype=np.int64),
                                           self.alpha, self.reference)
        if self.overlong_buffer > 0:
            rewards = rewards + self.overlong_factor * overlong_penalty(lengths, self.max_len, self.overlong_buffer)
        return np.asarray(rewards, dtype=np.float64)
