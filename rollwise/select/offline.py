"""Offline filter (docs/methods.md section 1): estimate every prompt's pass rate once with the initial
policy, keep the prompts whose rate lies in a band, then sample uniformly from them.

The estimate is paid up front (`start`, called by the training recipe before step 1, which rolls out
every prompt `samples` times and counts those rollouts as training cost; `fit` takes counts made elsewhere). Its prediction is that initial rate, never updated: the published result
is that online selection (MoPPS) beats it because difficulty moves as the policy learns. The counts
it saves (selector.npz) are also a MoPPS prior with the published weighting: `--prior RUN_DIR`.
"""

from __future__ import annotations

import numpy as np

from rollwise.select.uniform import UniformSelector


class OfflineFilterSelector:
    name = "offline"

    def __init__(self, pool_size: int, band: tuple[float, float] = (0.1, 0.9), samples: int = 8) -> None:
        self.band = tuple(band)
        self.samples = samples
        self.rates = np.full(pool_size, np.nan)
        self.successes = np.zeros(pool_size)
        self.trials = np.zeros(pool_size)
        self.kept = np.ones(pool_size, dtype=bool)
        self.uniform = UniformSelector(pool_size)

    @property
    def fitted(self) -> bool:
        return not np.isnan(self.rates).all()

    def start(self, estimate) -> dict:
        """The up-front pass: every prompt rolled out `samples` times with the initial policy."""
        successes, trials, metrics = estimate(self.samples)
        self.fit(successes, trials)
        return metrics

    def fit(self, successes: np.ndarray, trials: np.ndarray) -> None:
        """Pass rates for the whole pool, in pool order."""
        trials = np.asarray(trials, dtype=np.float64)
        if trials.shape != self.rates.shape or (trials < 0).any():
            raise ValueError("offline filter: fit needs a trial count for every prompt of the pool")
        self.successes, self.trials = np.asarray(successes, dtype=np.float64), trials
        # A prompt none of whose samples was scored (timeouts) has no rate: outside the band, tried last.
        self.rates = np.divide(self.successes, trials, out=np.full(trials.shape, np.nan), where=trials > 0)
        low, high = self.band
        self.kept = (self.rates >= low) & (self.rates <= high)

    def select(self, candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        candidates = np.asarray(candidates, dtype=np.int64)
        inside = candidates[self.kept[candidates]]
        if inside.size >= k:
            return self.uniform.select(inside, k, rng)
        # Too few prompts in the band: take them all and fill with those closest to the band.
        low, high = self.band
        outside = candidates[~self.kept[candidates]]
        distance = np.maximum(low - self.rates[outside], self.rates[outside] - high)
        return np.concatenate([inside, outside[np.argsort(distance, kind="stable")[: k - inside.size]]])

    def observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        pass  # offline: the estimate is never updated

    def predict(self, ids: np.ndarray) -> np.ndarray | None:
        return self.rates[np.asarray(ids, dtype=np.int64)] if self.fitted else None

    def state_dict(self) -> dict:
        return {"rates": self.rates.copy(), "successes": self.successes.copy(), "trials": self.trials.copy(),
                "kept": self.kept.copy(), "uniform": self.uniform.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.rates = np.asarray(state["rates"], dtype=np.float64).copy()
        self.successes = np.asarray(state["successes"], dtype=np.float64).copy()
        self.trials = np.asarray(state["trials"], dtype=np.float64).copy()
        self.kept = np.asarray(state["kept"], dtype=bool).copy()
        self.uniform.load_state_dict(state["uniform"])
