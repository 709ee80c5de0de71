"""Prefix hints: groups of near-hopeless prompts continue a prefix of one of the prompt's correct paths.

    predictor: p_i < below and a correct path c_i stored?  --> group = G suffixes of prompt + c_i[:h_i]
    h_i = round(f_i |c_i|) in [1, |c_i| - 1],   f_i = 1 - log(target) / log(p_i) + shift

A prompt the policy almost never solves gives all-wrong groups, which carry no group-relative
gradient. Conditioning the group on the start of a correct solution (Prefix Sampling, arXiv 2605.05112;
QuestA, arXiv 2507.13266) moves its success toward the target, so the group compares suffixes and
trains how to finish. The hint length comes from a constant-hazard reading of the predictor's p_i:
if every token of a solution goes right with the same probability, a whole solution succeeds with
p_i and the last (1 - f) of it with p_i^(1 - f), which equals the target at the f above (p_i = 1/16,
target 1/2: the last quarter is generated). Where the hard steps sit at the end of a solution (the
scratchpad's last additions), the rule gives hints too short; `shift`, one number for the pool,
corrects it from what hinted groups achieve: after each step with k hinted groups it moves by
0.5 k / (k + 3) times the gap between the target and their mean success (a step with one group, a
noisy measure, moves it an eighth as far as the gap; clipped to [-1, 1]). No random draw: resumes
stay exact.

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
  correct start, not how often it solves the prompt;
- p_i is a whole-path success rate. Until the run has a shared predictor, `WholePathBeta` keeps one
  from the samples that started from the prompt alone (full groups, whole-path samples), never from
  suffixes of a prefix: a selector's posterior (MoPPS) also counts partial and hinted groups, whose
  success a prefix has raised.
"""

from __future__ import annotations

import numpy as np

from rollwise.rollout.cache import ExperienceCache
from rollwise.select.mopps import update_posterior


def hint_lengths(p, path_lengths, below: float, target: float = 0.5, shift: float = 0.0) -> np.ndarray:
    """Hint tokens per prompt: round(f |c|) clipped to [1, |c| - 1] where p < below (and p < target), else 0.

    >>> hint_lengths([0.25, 0.0625, 0.3, 0.01], [12, 12, 12, 1], below=0.26).tolist()
    [6, 9, 0, 0]
    >>> hint_lengths([0.25, 0.0625], [12, 12], below=0.26, shift=0.25).tolist()
    [9, 11]
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1.0)
    lengths = np.asarray(path_lengths, dtype=np.int64)
    if not 0.0 < target < 1.0:
        raise ValueError(f"hint_lengths: target={target} must be in (0, 1)")
    fraction = 1.0 - np.log(target) / np.log(np.minimum(p, 1.0 - 1e-9)) + shift
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

    def __init__(self, pool_size: int, below: float, target: float = 0.5, cache_tokens: int | None = None,
                 decay: float = 0.5) -> None:
        self.correct = ExperienceCache(pool_size, cache_tokens)
        self.below = below
        self.target = target
        self.whole = WholePathBeta(pool_size, decay)  # p_i where the run attaches no predictor
        self.shift = 0.0  # added to every hint fraction; learnt from the hinted groups' success

    def pick(self, indices: np.ndarray, p: np.ndarray) -> dict[int, tuple[int, ...]]:
        """The hint prefix of each position to hint ({position: prefix}); p is the predicted success."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = np.where(self.correct.has(indices), self.correct.lengths(indices), 0)
        tokens = hint_lengths(p, lengths, self.below, self.target, self.shift)
        return {int(pos): tuple(int(t) for t in self.correct.get(int(indices[pos]))[: tokens[pos]])
                for pos in np.flatnonzero(tokens > 0)}

    def adapt(self, success_rates) -> None:
        """Move the shift toward hints that reach the target: by 0.5 k / (k + 3) of the gap, k groups.

        >>> hints = PrefixHints(pool_size=1, below=0.1)
        >>> hints.adapt([0.0, 0.2]); round(hints.shift, 6)   # gap 0.4, weight 0.5 x 2 / 5
        0.08
        """
        k = len(success_rates)
        if k:
            step = 0.5 * k / (k + 3) * (self.target - float(np.mean(success_rates)))
            self.shift = float(np.clip(self.shift + step, -1.0, 1.0))

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
        return {"correct": self.correct.state_dict(), "whole": self.whole.state_dict(), "shift": self.shift}

    def load_state_dict(self, state: dict) -> None:
        self.correct.load_state_dict(state["correct"])
        self.whole.load_state_dict(state["whole"])
        self.shift = float(state["shift"])


class WholePathBeta:
    """A per-prompt Beta of whole-path success, fed only by samples from the prompt alone (MoPPS's decayed
    update, prior Beta(1, 1)); the hints' predictor where the run gives none.

    >>> beta = WholePathBeta(pool_size=2, decay=0.5)
    >>> beta.observe(np.array([1]), np.array([0]), np.array([8]))   # b = 0.5 + 0.5 + 8
    >>> beta.mean(np.array([0, 1])).tolist()
    [0.5, 0.1]
    """

    def __init__(self, pool_size: int, decay: float = 0.5) -> None:
        self.decay = decay
        self.a, self.b = np.ones(pool_size), np.ones(pool_size)

    def observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        one = np.ones(ids.size)
        self.a[ids], self.b[ids] = update_posterior(self.a[ids], self.b[ids], one, one, successes, trials, self.decay)

    def observe_groups(self, groups: list, skip: set) -> None:
        """Observe each group's samples that started from the prompt alone (empty prefix); `skip`: hinted ids."""
        ids, successes, trials = [], [], []
        for g in groups:
            whole = [a for s, a in zip(g.samples, g.acc) if not s.prefix_ids]
            if g.index not in skip and whole:
                ids.append(g.index)
                successes.append(float(np.sum(whole)))
                trials.append(len(whole))
        if ids:
            self.observe(np.asarray(ids), np.asarray(successes), np.asarray(trials))

    def beta(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        return self.a[ids].copy(), self.b[ids].copy()

    def mean(self, ids: np.ndarray) -> np.ndarray:
        a, b = self.beta(ids)
        return a / (a + b)

    def state_dict(self) -> dict:
        return {"a": self.a.copy(), "b": self.b.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.a = np.asarray(state["a"], dtype=np.float64).copy()
        self.b = np.asarray(state["b"], dtype=np.float64).copy()
