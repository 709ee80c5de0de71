"""The predictor interface: one estimate of every prompt's current success rate.

A predictor turns verified outcomes into a Beta(a_i, b_i) per prompt, which everything downstream
reads: the selection rule draws Thompson samples from it, the allocator takes its mean as p_i, and
`rollwise replay` scores it. State lives in flat numpy arrays indexed by pool position, so a pool of
millions of prompts predicts in milliseconds and checkpoints as a few arrays (no pickled objects: a
resumed run continues exactly).

Outcome kinds (`rollwise.predict.outcomes`): `train`, `presample`, `probe` and `prefilter` measure a
prompt's whole-path success and are evidence; `partial` continues a cached prefix (RPO) and measures
the prefix, not the prompt, so predictors ignore it; `eval` ids index the held-out set, never the
pool, and are refused.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy.special import betaln

EVIDENCE_KINDS = ("train", "presample", "probe", "prefilter")
IGNORED_KINDS = ("partial",)


class Predictor(Protocol):
    """Predicts each prompt's current success rate; see the module docstring."""

    name: str

    def observe(self, step: int, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray,
                kind: str = "train") -> None:
        """Take the verified successes out of trials of each pool index at a step."""

    def beta(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The current Beta(a, b) of each index (float64 arrays, both positive)."""

    def mean(self, ids: np.ndarray) -> np.ndarray:
        """The predicted success rate of each index: the mean of its Beta."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def checked_observation(ids, successes, trials, pool_size: int, kind: str):
    """Validated (ids, successes, trials) as int64 / float64 arrays, or None for a kind to ignore.

    ValueError for `eval` (its ids index the held-out set), an unknown kind, an id outside the pool or
    twice in one observation, and successes outside 0..trials.
    """
    if kind in IGNORED_KINDS:
        return None
    if kind not in EVIDENCE_KINDS:
        hint = " (held-out ids index another set)" if kind == "eval" else ""
        raise ValueError(f"predictor observe: kind {kind!r} is not evidence of a pool prompt's rate{hint}; "
                         f"expected one of {', '.join(EVIDENCE_KINDS + IGNORED_KINDS)}")
    ids = np.asarray(ids, dtype=np.int64)
    successes = np.asarray(successes, dtype=np.float64)
    trials = np.asarray(trials, dtype=np.float64)
    if not ids.shape == successes.shape == trials.shape or ids.ndim != 1:
        raise ValueError("predictor observe: ids, successes and trials must be 1-D arrays of one length")
    if ids.size and (ids.min() < 0 or ids.max() >= pool_size):
        raise ValueError(f"predictor observe: index outside the pool of {pool_size} prompts")
    if np.unique(ids).size != ids.size:
        raise ValueError("predictor observe: an id appears twice in one observation")
    if ((successes < 0) | (successes > trials)).any():
        raise ValueError("predictor observe: successes must lie between 0 and trials")
    return ids, successes, trials


def zero_variance_chance(a, b, n) -> np.ndarray:
    """P(a group of n comes out all wrong or all right) under the beta-binomial with Beta(a, b).

    P(0 of n) = B(a, b + n) / B(a, b) and P(n of n) = B(a + n, b) / B(a, b).

    >>> round(float(zero_variance_chance(1.0, 9.0, 8)), 4)   # after one 0/8 visit: 9/17 all wrong, + B(9, 9) * 9
    0.5295
    """
    a, b, n = (np.asarray(x, dtype=np.float64) for x in (a, b, n))
    base = betaln(a, b)
    return np.exp(betaln(a, b + n) - base) + np.exp(betaln(a + n, b) - base)


def mixed_chance_of_rate(p, n) -> np.ndarray:
    """P(a group of n at success rate p is mixed) = 1 - p^n - (1 - p)^n.

    >>> float(mixed_chance_of_rate(0.5, 2))
    0.5
    """
    p = np.asarray(p, dtype=np.float64)
    return 1.0 - p ** n - (1.0 - p) ** n


def load_arrays(owner, state: dict, shapes: dict[str, tuple], dtype=np.float64) -> None:
    """Set owner.<key> from state[key] for each key, checking the shape (the pool must match)."""
    for key, shape in shapes.items():
        if key not in state:
            raise ValueError(f"{type(owner).__name__} state lacks {key!r}; was it saved by another predictor?")
        value = np.asarray(state[key], dtype=dtype)
        if value.shape != shape:
            raise ValueError(f"{type(owner).__name__} state {key!r} has shape {value.shape}, expected {shape} "
                             "(saved for another pool?)")
        setattr(owner, key, value.copy())
