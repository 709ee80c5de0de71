"""MoPPS: model-predictive prompt selection (docs/methods.md section 2).

Every prompt is a Bernoulli bandit arm with a Beta(a_i, b_i) posterior over its current success rate.
After a step in which prompt i had s successes in k rollouts, with decay lambda in (0, 1]:

    a_i <- lambda * a_i + (1 - lambda) * a0_i + s
    b_i <- lambda * b_i + (1 - lambda) * b0_i + (k - s)

(only observed prompts are updated; lambda = 1 is plain accumulation). To select B prompts, draw a
candidate set of c * B (the whole pool when smaller), take one Thompson sample r_i ~ Beta(a_i, b_i)
per candidate, and keep the B whose draw is closest to the target (Top-B, default 0.5) or, in the
threshold variant, those inside a band. No model call is made: selection costs c * B Beta draws.

State lives in flat float64 arrays indexed by pool position, so a million-prompt pool selects in
about a millisecond and saves as four arrays.
"""

from __future__ import annotations

import numpy as np


def update_posterior(a, b, a0, b0, successes, trials, decay: float):
    """The decayed Beta update for the observed arms (pure; returns new a, b).

    >>> update_posterior(np.array([3.]), np.array([5.]), np.array([1.]), np.array([1.]), np.array([2]), np.array([4]), 0.5)
    (array([4.]), array([5.]))
    """
    successes = np.asarray(successes, dtype=np.float64)
    failures = np.asarray(trials, dtype=np.float64) - successes
    new_a = decay * a + (1.0 - decay) * a0 + successes
    new_b = decay * b + (1.0 - decay) * b0 + failures
    return new_a, new_b


def top_b(draws: np.ndarray, k: int, target: float) -> np.ndarray:
    """Positions of the k draws closest to the target (ties broken by position: deterministic)."""
    distance = np.abs(np.asarray(draws) - target)
    if k >= distance.size:
        return np.argsort(distance, kind="stable")
    part = np.argpartition(distance, k - 1)[:k]
    return part[np.argsort(distance[part], kind="stable")]


def band_select(draws: np.ndarray, k: int, band: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Positions of k draws inside [low, high] chosen at random; when fewer fall inside, fill by distance to the band."""
    low, high = band
    draws = np.asarray(draws)
    distance = np.maximum(np.maximum(low - draws, draws - high), 0.0)
    inside = np.flatnonzero(distance == 0.0)
    if inside.size >= k:
        return rng.choice(inside, size=k, replace=False)
    outside = np.flatnonzero(distance > 0.0)
    fill = outside[np.argsort(distance[outside], kind="stable")[: k - inside.size]]
    return np.concatenate([inside, fill])


class MoPPSSelector:
    """Thompson sampling over per-prompt Beta posteriors, Top-B (default) or threshold.

    >>> sel = MoPPSSelector(pool_size=4)
    >>> sel.observe(np.array([2]), np.array([3]), np.array([4]))
    >>> sel.predict(np.array([0, 2])).tolist()
    [0.5, 0.6666666666666666]
    """

    def __init__(self, pool_size: int, decay: float = 0.5, candidates: int = 8, target: float = 0.5,
                 band: tuple[float, float] | None = None, prior_a: np.ndarray | None = None,
                 prior_b: np.ndarray | None = None) -> None:
        self.name = "mopps-threshold" if band is not None else "mopps"
        self.decay = decay
        self.candidate_factor = candidates
        self.target = target
        self.band = tuple(band) if band is not None else None
        self.prior_a = np.ones(pool_size) if prior_a is None else np.asarray(prior_a, dtype=np.float64).copy()
        self.prior_b = np.ones(pool_size) if prior_b is None else np.asarray(prior_b, dtype=np.float64).copy()
        if self.prior_a.shape != (pool_size,) or self.prior_b.shape != (pool_size,):
            raise ValueError(f"MoPPS priors must have one value per prompt ({pool_size})")
        if (self.prior_a <= 0).any() or (self.prior_b <= 0).any():
            raise ValueError("MoPPS priors must be positive Beta parameters")
        self.a = self.prior_a.copy()
        self.b = self.prior_b.copy()

    def select(self, candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        candidates = np.asarray(candidates, dtype=np.int64)
        size = self.candidate_factor * k
        if candidates.size > size:
            candidates = rng.choice(candidates, size=size, replace=False)
        draws = rng.beta(self.a[candidates], self.b[candidates])
        if self.band is None:
            chosen = top_b(draws, k, self.target)
        else:
            chosen = band_select(draws, k, self.band, rng)
        return candidates[chosen]

    def start(self, estimate) -> dict:
        return {}  # no up-front estimate

    def observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if np.unique(ids).size != ids.size:
            raise ValueError("MoPPS observe: an id appears twice in one observation")
        self.a[ids], self.b[ids] = update_posterior(self.a[ids], self.b[ids], self.prior_a[ids], self.prior_b[ids],
                                                    successes, trials, self.decay)

    def predict(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        return self.a[ids] / (self.a[ids] + self.b[ids])

    def beta(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The posteriors themselves (a selector that is its own predictor, e.g. for GVM's p)."""
        ids = np.asarray(ids, dtype=np.int64)
        return self.a[ids].copy(), self.b[ids].copy()

    mean = predict

    def state_dict(self) -> dict:
        return {"a": self.a.copy(), "b": self.b.copy(), "prior_a": self.prior_a.copy(), "prior_b": self.prior_b.copy()}

    def load_state_dict(self, state: dict) -> None:
        if len(state["a"]) != len(self.a):
            raise ValueError(f"selector state is for a pool of {len(state['a'])} prompts, this pool has {len(self.a)}")
        for key in ("a", "b", "prior_a", "prior_b"):
            setattr(self, key, np.asarray(state[key], dtype=np.float64).copy())
