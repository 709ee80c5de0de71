"""SPEED-style screening as an allocator (SPEED-RL, arXiv 2506.09016; docs/methods.md sections 6-7).

Every selected prompt is first screened with `screen` samples (the recipe's pre-sample pass, part of
the prompt's group and of the step's budget, exactly as GVM's pre-samples are). The rest of the
budget, N - screen x B, then goes only to the prompts whose screening came out mixed (some right,
some wrong), in equal shares rounded by largest remainders (earlier prompts take the leftover units).
Prompts screened all-wrong or all-right get nothing more: under group-relative advantages more
samples of them would most likely add no signal, and their screening samples are already paid.

A mixed prompt gets at most 2n - screen more (2n in all, GVM's default cap), so one mixed prompt
among many hopeless ones cannot take the step; what the cap leaves, and the whole rest where no prompt
came out mixed, is spread evenly over the others (training never stalls, and every allocator spends the
same rollouts per generation batch).

The paper screens a larger batch and keeps only the prompts that qualify, filling the training batch
from further screening rounds; here the step's prompts are fixed by the selector (and the dynamic
sampling filter adds generation batches), so screening decides how samples are spread, not which
prompts exist.
"""

from __future__ import annotations

import numpy as np

from rollwise.allocate.base import check_ids, largest_remainder


class SpeedAllocator:
    """Screen every prompt with `screen` samples; the rest of the budget to the mixed ones, equally.

    >>> speed = SpeedAllocator(screen=4, n=8)
    >>> ids = np.array([5, 2, 9])
    >>> speed.needs_estimate(ids, step=1).tolist()
    [True, True, True]
    >>> speed.observe(ids, np.array([0, 2, 1]), np.array([4, 4, 4]), np.full(3, np.nan))
    >>> speed.allocate(ids, budget=24 - 12).tolist()   # 12 left: prompts 2 and 9 were mixed
    [0, 6, 6]
    >>> speed.observe(np.array([7]), np.array([1]), np.array([4]), np.full(1, np.nan))
    >>> ids = np.array([5, 7, 8, 10])   # one mixed prompt (7) among four: at most 2n - screen = 12 more
    >>> speed.observe(np.array([8, 10]), np.array([0, 4]), np.array([4, 4]), np.full(2, np.nan))
    >>> speed.allocate(ids, budget=32 - 16).tolist()
    [2, 12, 1, 1]
    """

    name = "speed"
    needs_grad_norms = False

    def __init__(self, screen: int, n: int) -> None:
        if not 0 < screen < n:
            raise ValueError(f"speed_screen={screen}: must be at least 1 and below samples_per_prompt={n} "
                             "(screening samples are part of each prompt's budget)")
        self.presamples = screen
        self.cap = 2 * n - screen  # most samples a mixed prompt gets after its screening: 2n in all
        self.step = -1
        self._mixed: dict[int, bool] = {}  # this step's screening verdicts (consumed within the step)

    def needs_estimate(self, ids: np.ndarray, step: int) -> np.ndarray:
        ids = check_ids(ids)
        if step != self.step:
            self.step, self._mixed = int(step), {}
        return np.ones(ids.size, dtype=bool)

    def observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray, grad_norms: np.ndarray) -> None:
        ids = check_ids(ids)
        s, k = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
        for i, si, ki in zip(ids.tolist(), s, k):
            if i not in self._mixed:  # the first observation of the step is the screening one
                self._mixed[i] = bool(0 < si < ki)

    def allocate(self, ids: np.ndarray, budget: int) -> np.ndarray:
        ids = check_ids(ids)
        missing = [i for i in ids.tolist() if i not in self._mixed]
        if missing:
            raise ValueError(f"speed: prompt ids {missing[:5]} were not screened this step; pre-sample the prompts "
                             "that needs_estimate() marks and observe() them before allocate()")
        mixed = np.array([self._mixed[i] for i in ids.tolist()], dtype=bool)
        to_mixed = min(budget, self.cap * int(mixed.sum()))
        counts = np.zeros(ids.size, dtype=np.int64)
        if to_mixed:
            counts[mixed] = largest_remainder(np.ones(int(mixed.sum())), to_mixed)
        rest = budget - to_mixed  # what the cap leaves (everything when none came out mixed): spread evenly
        if rest:
            others = ~mixed if (~mixed).any() else mixed
            counts[others] += largest_remainder(np.ones(int(others.sum())), rest)
        return counts

    def state_dict(self) -> dict:
        return {}  # verdicts live within one step; a checkpoint is written between steps

    def load_state_dict(self, state: dict) -> None:
        self.step, self._mixed = -1, {}
