"""Unscored answers are unknown, not wrong: what training reads from groups not every sample of which was judged.

An answer the verifier never judged (it timed out, the batch ran out of time, or the circuit breaker
skipped its prompt: `Score.scored`) keeps acc = reward = 0 in its `Group` only as a placeholder, with
`Group.scored` False. Everything that learns from outcomes reads the scored samples alone:

- the update: unscored samples are left out of the batch, so they get no advantage, add no loss
  term and no token to the token-mean denominator, and take no part in their group's mean and
  standard deviation (GRPO) or the batch's (Reinforce++, PPO's whitening);
- observations: selectors and allocators count scored samples as trials; a group with none is not
  observed at all (`rollwise.rollout.collect`);
- the dynamic-sampling filter and the effective-group ratio read the scored outcomes;
- metrics: `unscored` counts them per step; accuracy, reward and prediction quality are over scored
  samples and observed groups.

So a few slow answers (or a hostile batch that trips the breaker) cost their own signal, never the
correct answers of other prompts.

    >>> import numpy as np
    >>> from rollwise.rollout.collect import Group
    >>> g = Group(0, ["a", "b", "c"], np.array([1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0]),
    ...           scored=np.array([True, True, False]))
    >>> batch = ScoredBatch.from_groups([g])
    >>> batch.samples, batch.acc.tolist(), observed_rates([g]).tolist()
    (['a', 'b'], [1.0, 0.0], [0.5])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ScoredBatch:
    """The scored samples of some groups, flattened in order, with each one's group position."""

    samples: list
    rewards: np.ndarray
    acc: np.ndarray
    groups: np.ndarray

    @classmethod
    def from_groups(cls, groups: list) -> "ScoredBatch":
        samples = [s for g in groups for s, keep in zip(g.samples, g.scored) if keep]
        if not samples:
            return cls([], np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
        return cls(samples, np.concatenate([g.rewards[g.scored] for g in groups]),
                   np.concatenate([g.acc[g.scored] for g in groups]),
                   np.concatenate([np.full(g.trials, i, dtype=np.int64) for i, g in enumerate(groups)]))

    def take(self, rows: np.ndarray) -> "ScoredBatch":
        return ScoredBatch([self.samples[i] for i in rows], self.rewards[rows], self.acc[rows], self.groups[rows])


def observed_rates(groups: list) -> np.ndarray:
    """Each group's success rate over its scored samples (NaN for a group with none)."""
    trials = np.array([g.trials for g in groups], dtype=np.float64)
    successes = np.array([g.successes for g in groups], dtype=np.float64)
    return np.divide(successes, trials, out=np.full(len(groups), np.nan), where=trials > 0)
