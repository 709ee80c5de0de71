"""GRESO-style skipping (arXiv 2506.02177, "Act Only When It Pays: Efficient Reinforcement Learning
for LLM Reasoning via Selective Rollouts"): prompts that stayed zero-variance are skipped.

A prompt whose last z observations were all correct (z_easy) or all wrong (z_hard) in a row is
skipped with probability 1 - max(p^z, 0.01), p = `p_easy` or `p_hard`, the exploration probability
of its kind. The candidates are walked in random order and the first k not skipped are kept (filled
from the skipped ones, in the same order, when fewer survive). After each observation the two
probabilities move by `step` toward the target zero-variance share, split a third to all-correct and
two thirds to all-wrong groups (hard prompts are the ones the improving policy may still crack):

    p_easy <- p_easy - step  if the observed all-correct share >= target / 3,  else + step
    p_hard <- p_hard - step  if the observed all-wrong share >= 2 target / 3,  else + step

clipped to [p_min, p_max]. The published defaults: p = 0.5 at start, step 0.01, [0.05, 0.95], target
0.25. Their public code measures the shares over the whole run so far; this rule reads each
observation's share (the controller then answers to today's policy). The rule ignores the
predictor: its evidence is the per-prompt streaks it keeps from `observe`.
"""

from __future__ import annotations

import numpy as np

from rollwise.predict.base import load_arrays


class GRESOSkip:
    """Probabilistic skipping of prompts with zero-variance streaks, exploration adapted to a target."""

    name = "greso"

    def __init__(self, pool_size: int, target: float = 0.25, p_start: float = 0.5, step: float = 0.01,
                 p_min: float = 0.05, p_max: float = 0.95) -> None:
        if not 0.0 <= target <= 1.0 or not 0.0 <= p_min <= p_start <= p_max <= 1.0 or not step >= 0:
            raise ValueError("greso rule: need 0 <= target <= 1, 0 <= p_min <= p_start <= p_max <= 1, step >= 0")
        self.target, self.step, self.p_min, self.p_max = float(target), float(step), float(p_min), float(p_max)
        self.easy_streak, self.hard_streak = np.zeros(pool_size), np.zeros(pool_size)
        self.p_easy = self.p_hard = float(p_start)

    def skip_probability(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        easy, hard = self.easy_streak[ids], self.hard_streak[ids]
        keep = np.where(easy > 0, np.maximum(self.p_easy ** easy, 0.01), 1.0)
        keep = np.where(hard > 0, np.maximum(self.p_hard ** hard, 0.01), keep)
        return 1.0 - keep

    def select(self, predictor, candidates, k, rng):
        candidates = rng.permutation(np.asarray(candidates, dtype=np.int64))
        skipped = rng.random(candidates.size) < self.skip_probability(candidates)
        order = np.concatenate([np.flatnonzero(~skipped), np.flatnonzero(skipped)])
        return candidates[order[:k]]

    def observe(self, ids, successes, trials) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        successes, trials = np.asarray(successes), np.asarray(trials)
        if not ids.size:
            return
        all_right, all_wrong = successes == trials, successes == 0
        self.easy_streak[ids] = np.where(all_right, self.easy_streak[ids] + 1, 0)
        self.hard_streak[ids] = np.where(all_wrong & ~all_right, self.hard_streak[ids] + 1, 0)
        move = lambda p, share, goal: float(np.clip(p - self.step if share >= goal else p + self.step,
                                                   self.p_min, self.p_max))
        self.p_easy = move(self.p_easy, all_right.mean(), self.target / 3)
        self.p_hard = move(self.p_hard, (all_wrong & ~all_right).mean(), 2 * self.target / 3)

    def state_dict(self) -> dict:
        return {"easy_streak": self.easy_streak.copy(), "hard_streak": self.hard_streak.copy(),
                "p_easy": self.p_easy, "p_hard": self.p_hard}

    def load_state_dict(self, state: dict) -> None:
        shape = (len(self.easy_streak),)
        load_arrays(self, state, {"easy_streak": shape, "hard_streak": shape})
        self.p_easy, self.p_hard = float(state["p_easy"]), float(state["p_hard"])
