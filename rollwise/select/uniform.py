"""Uniform selection: B prompts at random, without replacement within an epoch (docs/methods.md section 1)."""

from __future__ import annotations

import numpy as np


class UniformSelector:
    """Draws uniformly among candidates not yet seen this epoch; a new epoch starts when they run out.

    It makes no prediction, so prediction-quality metrics are absent for it.
    """

    name = "uniform"

    def __init__(self, pool_size: int) -> None:
        self.seen = np.zeros(pool_size, dtype=bool)
        self.epoch = 0

    def select(self, candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        candidates = np.asarray(candidates, dtype=np.int64)
        fresh = candidates[~self.seen[candidates]]
        if fresh.size >= k:
            chosen = rng.choice(fresh, size=k, replace=False)
        else:
            # The epoch ends inside this batch: take what is left, start a new epoch for the rest.
            self.seen[:] = False
            self.epoch += 1
            rest = np.setdiff1d(candidates, fresh, assume_unique=True)
            chosen = np.concatenate([fresh, rng.choice(rest, size=min(k - fresh.size, rest.size), replace=False)])
        self.seen[chosen] = True
        return chosen

    def start(self, estimate) -> dict:
        return {}  # no up-front estimate

    def observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        pass

    def predict(self, ids: np.ndarray) -> None:
        return None

    def state_dict(self) -> dict:
        return {"seen": self.seen.copy(), "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        if len(state["seen"]) != len(self.seen):
            raise ValueError(f"selector state is for a pool of {len(state['seen'])} prompts, this pool has {len(self.seen)}")
        self.seen = np.asarray(state["seen"], dtype=bool).copy()
        self.epoch = int(state["epoch"])
