"""Prefix hints: groups of near-hopeless prompts continue a prefix of one of the prompt's correct paths.

    predictor: p_i < below and a correct path c_i stored?  --> group = G suffixes of prompt + c_i[:h_i]
    h_i = round(f_i |c_i|) in [1, |c_i| - 1],   f_i = 1 - log(target) / log(p_i)

A prompt the policy almost never solves gives all-wrong groups, which carry no group-relative
gradient. Conditioning the group on the start of a correct solution (Prefix Sampling, arXiv 2605.05112;
QuestA, arXiv 2507.13266) moves its success toward the target, so the group compares suffixes and
trains how to finish. The hint length comes from a constant-hazard reading of the predictor's p_i:
if every token of a solution goes right with the same probability, a whole solution succeeds with
p_i and the last (1 - f) of it with p_i^(1 - f), which equals the target at the f above (p_i = 1/16,
target 1/2: the last quarter is generated). It needs no random draw, so resumes stay exact.

The choices (docs/rpo.md says more):
- the hint is part of the conditioning, like the prompt: its tokens are kept out of the loss
  (`Sample.masked_prefix`; Prefix Sampling masks replayed tokens too), and they were not generated,
  so they count as prefix tokens, never as generated ones;
- hints come from the prompt's own latest correct path (any training group of the prompt: whole
  samples preferred, then suffixes of a cached or hinted prefix). A similar prompt's path would not
  help on tasks whose intermediate steps are specific to the numbers, so none is borrowed;
- held-out evaluation and the probe never use hints (they roll out without a plan);
- a hinted group refreshes no cached path (its prefix is not the policy's own) and is logged as
  `partial` (the plan's `cached` and `hinted` flags): its success says how well the policy finishes a
  correct start, not how often it solves the prompt.
"""

from __future__ import annotations

import numpy as np

from rollwise.rollout.cache import ExperienceCache


def hint_lengths(p, path_lengths, below: float, target: float = 0.5) -> np.ndarray:
    """Hint tokens per prompt: round(f |c|) clipped to [1, |c| - 1] where p < below (and p < target), else 0.

    >>> hint_lengths([0.25, 0.0625, 0.3, 0.01], [12, 12, 12, 1], below=0.26).tolist()
    [6, 9, 0, 0]
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1.0)
    lengths = np.asarray(path_lengths, dtype=np.int64)
    if not 0.0 < target < 1.0:
        raise ValueError(f"hint_lengths: target={target} must be in (0, 1)")
    fraction = 1.0 - np.log(target) / np.log(np.minimum(p, 1.0 - 1e-9))
    tokens = np.clip(np.rint(fraction * lengths), 1, np.maximum(lengths - 1, 1)).astype(np.int64)
    use = (p < below) & (p < target) & (lengths >= 2)
    return np.where(use, tokens, 0)


class PrefixHints:
    """The latest correct path of every prompt (a second experience cache) and the hinting rule.

    >>> hints = PrefixHints(pool_size=3, below=0.1, target=0.5)
    >>> hints.correct.put(1, [4, 5, 6, 7, 8, 9, 1], step=2)
    >>> prefixes = hints.pick(np.array([0, 1, 2]), np.array([0.01, 0.0625, 0.01]))
    >>> prefixes   # prompt 1: 7 tokens, hint round(0.75 x 7) = 5; the others have no correct path
    {1: (4, 5, 6, 7, 8)}
    """

    def __init__(self, pool_size: int, below: float, target: float = 0.5, cache_tokens: int | None = None) -> None:
        self.correct = ExperienceCache(pool_size, cache_tokens)
        self.below = below
        self.target = target

    def pick(self, indices: np.ndarray, p: np.ndarray) -> dict[int, tuple[int, ...]]:
        """The hint prefix of each position to hint ({position: prefix}); p is the predicted success."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = np.where(self.correct.has(indices), self.correct.lengths(indices), 0)
        tokens = hint_lengths(p, lengths, self.below, self.target)
        return {int(pos): tuple(int(t) for t in self.correct.get(int(indices[pos]))[: tokens[pos]])
                for pos in np.flatnonzero(tokens > 0)}

    def ages(self, indices: np.ndarray, step: int) -> np.ndarray:
        return self.correct.age(indices, step)

    def record(self, groups: list, step: int, prefix_births) -> int:
        """Keep one correct answer per group (a whole sample first, else the first correct one); returns how many.

        `prefix_births(group, sample)` gives the births of the sample's prefix tokens (where they were read).
        """
        ids, paths, births = [], [], []
        for g in groups:
            correct = [s for s, a in zip(g.samples, g.acc) if a > 0]
            if not correct:
                continue
            chosen = next((s for s in correct if not s.prefix_ids), correct[0])
            ids.append(g.index)
            paths.append(list(chosen.prefix_ids) + list(chosen.completion_ids))
            births.append(np.concatenate([prefix_births(g, chosen), np.full(len(chosen.completion_ids), step)]))
        if ids:
            self.correct.put_many(np.asarray(ids, dtype=np.int64), paths, step, births)
        return len(ids)

    def state_dict(self) -> dict:
        return {"correct": self.correct.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.correct.load_state_dict(state["correct"])
