"""The per-prompt Beta predictor: MoPPS's posterior, exactly (docs/methods.md section 2).

After prompt i gets s successes in k whole-path rollouts, with decay lambda in (0, 1]:

    a_i <- lambda * a_i + (1 - lambda) * a0_i + s
    b_i <- lambda * b_i + (1 - lambda) * b0_i + (k - s)

Only observed prompts move (decay is applied at observation); a0 / b0 are per-prompt prior arrays
(`rollwise.select.priors.build_prior`), Beta(1, 1) by default. A prompt's estimate therefore goes
stale between its visits: the shared-evidence predictors (`drift`, `irt`) address that.
"""

from __future__ import annotations

import numpy as np

from rollwise.predict.base import checked_observation, load_arrays
from rollwise.select.mopps import update_posterior


def prior_arrays(pool_size: int, prior) -> tuple[np.ndarray, np.ndarray]:
    """(a0, b0) float64 arrays: Beta(1, 1) for prior None, else the given pair, checked."""
    if prior is None:
        return np.ones(pool_size), np.ones(pool_size)
    a0, b0 = (np.asarray(x, dtype=np.float64).copy() for x in prior)
    if a0.shape != (pool_size,) or b0.shape != (pool_size,):
        raise ValueError(f"prior arrays must have one value per prompt ({pool_size}), got {a0.shape} and {b0.shape}")
    if not (np.isfinite(a0).all() and np.isfinite(b0).all() and (a0 > 0).all() and (b0 > 0).all()):
        raise ValueError("prior arrays must hold positive, finite Beta parameters")
    return a0, b0


class BetaPredictor:
    """Per-prompt decayed Beta posteriors (MoPPS).

    >>> p = BetaPredictor(4, decay=0.5)
    >>> p.observe(1, np.array([2]), np.array([3]), np.array([4]))
    >>> p.mean(np.array([0, 2])).tolist()
    [0.5, 0.6666666666666666]
    """

    name = "beta"

    def __init__(self, pool_size: int, decay: float = 0.5, prior=None) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"beta predictor: decay must lie in (0, 1], got {decay}")
        self.decay = float(decay)
        self.prior_a, self.prior_b = prior_arrays(pool_size, prior)
        self.a, self.b = self.prior_a.copy(), self.prior_b.copy()

    def observe(self, step: int, ids, successes, trials, kind: str = "train") -> None:
        checked = checked_observation(ids, successes, trials, len(self.a), kind)
        if checked is None:
            return
        ids, successes, trials = checked
        self.a[ids], self.b[ids] = update_posterior(self.a[ids], self.b[ids], self.prior_a[ids], self.prior_b[ids],
                                                    successes, trials, self.decay)

    def beta(self, ids) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        return self.a[ids], self.b[ids]

    def mean(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        return self.a[ids] / (self.a[ids] + self.b[ids])

    def state_dict(self) -> dict:
        return {"a": self.a.copy(), "b": self.b.copy(), "prior_a": self.prior_a.copy(), "prior_b": self.prior_b.copy()}

    def load_state_dict(self, state: dict) -> None:
        shape = (len(self.a),)
        load_arrays(self, state, {"a": shape, "b": shape, "prior_a": shape, "prior_b": shape})
