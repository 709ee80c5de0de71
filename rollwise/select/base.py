"""The selector interface: which prompts of the pool a step trains on.

Prompts are addressed by their pool index 0..N-1 (see `rollwise.data.pool`). Selectors keep their state
in flat numpy arrays of length N so that a pool of millions of prompts selects in milliseconds and
saves as a few arrays. All randomness comes from the generator passed in, so a resumed run makes the
same selections as an uninterrupted one.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Selector(Protocol):
    name: str

    def select(self, candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """Choose k distinct pool indices from `candidates` (the indices eligible this step)."""

    def observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        """Record the verified successes out of trials for each pool index after a rollout."""

    def start(self, estimate) -> dict:
        """Before step 1: `estimate(samples)` rolls out every pool prompt `samples` times and returns
        (successes, trials, metrics); a selector that needs an up-front estimate (the offline filter) calls
        it and returns the metrics, the others return {} without calling it."""

    def predict(self, ids: np.ndarray) -> np.ndarray | None:
        """Predicted success rate per index, or None for selectors that make no prediction."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...
