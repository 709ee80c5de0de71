"""Fixed allocation: every prompt gets the same n samples (the baseline of docs/methods.md section 1)."""

from __future__ import annotations

import numpy as np

from rollwise.allocate.base import check_ids


class FixedAllocator:
    """n samples per prompt; keeps no estimates and never asks for pre-samples.

    >>> FixedAllocator(4).allocate(np.array([7, 2, 9]), budget=12).tolist()
    [4, 4, 4]
    """

    name = "fixed"
    presamples = 0
    needs_grad_norms = False

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"samples_per_prompt must be at least 1, got {n}")
        self.n = n

    def allocate(self, ids: np.ndarray, budget: int) -> np.ndarray:
        ids = check_ids(ids)
        if budget != self.n * ids.size:
            raise ValueError(f"fixed allocation gives {self.n} samples to each of {ids.size} prompts "
                             f"({self.n * ids.size} in all), but the budget is {budget}; "
                             "pass budget = samples_per_prompt x prompts, or use allocator=gvm")
        return np.full(ids.size, self.n, dtype=np.int64)

    def observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray, grad_norms: np.ndarray) -> None:
        pass

    def needs_estimate(self, ids: np.ndarray, step: int) -> np.ndarray:
        return np.zeros(np.asarray(ids).size, dtype=bool)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
