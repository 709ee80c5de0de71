"""The allocator interface (how many samples each selected prompt gets) and its integer rounding.

An allocator turns a step's prompt ids and a total sample budget N into integer counts n_i that sum
to N exactly. Prompts are addressed by pool index 0..P-1, as for selectors; allocators that keep
estimates hold them in flat numpy arrays of length P.

`largest_remainder` is the one rounding rule every allocator shares: proportional shares, clipped to
[minimum, maximum], floored, and the units left over go to the largest fractional parts.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Allocator(Protocol):
    """What the recipe calls, in this order, every step.

    1. `needs_estimate(ids, step)`: which prompts must be pre-sampled before allocating (the call
       also tells the allocator the current step);
    2. the recipe rolls out `presamples` completions for those and calls `observe` with the results;
    3. `allocate(ids, budget)`: the n_i of the main rollout;
    4. after the main rollout, `observe` again with its successes (and gradient norms if measured).
    """

    name: str
    presamples: int  # N': completions per prompt of an estimation pass (0: never pre-samples)
    needs_grad_norms: bool  # whether `observe` wants gradient norms (the recipe only pays for them then)

    def allocate(self, ids: np.ndarray, budget: int) -> np.ndarray:
        """n_i per id (int64, same order as ids), summing to budget exactly."""

    def observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray, grad_norms: np.ndarray) -> None:
        """Record verified successes out of trials per id, and the mean gradient norm over each id's
        correct samples (NaN where unknown or where no sample was correct)."""

    def needs_estimate(self, ids: np.ndarray, step: int) -> np.ndarray:
        """Bool per id: whether the recipe must pre-sample this prompt before `allocate`."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class BetaPredictor(Protocol):
    """What allocators and partial rollouts read from a run's predictor of prompt success: the current
    Beta(a, b) of each prompt's whole-path success rate, and its mean a / (a + b).

    The run's shared predictor (which also observes every outcome) provides more; these two are all the
    readers here need. `FlatPrior` stands in where a run has none, `SelectorBeta` adapts a MoPPS selector.
    """

    def beta(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def mean(self, ids: np.ndarray) -> np.ndarray: ...


class FlatPrior:
    """Beta(1, 1) for every prompt: what a reader assumes when the run has no predictor.

    >>> FlatPrior().beta(np.array([3, 7]))
    (array([1., 1.]), array([1., 1.]))
    """

    def beta(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = np.asarray(ids).size
        return np.ones(size), np.ones(size)

    def mean(self, ids: np.ndarray) -> np.ndarray:
        return np.full(np.asarray(ids).size, 0.5)


def check_ids(ids: np.ndarray, pool_size: int | None = None) -> np.ndarray:
    """ids as int64, refusing duplicates and (with pool_size) indices outside the pool."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError(f"prompt ids must be a 1-D array, got shape {ids.shape}")
    if np.unique(ids).size != ids.size:
        values, counts = np.unique(ids, return_counts=True)
        raise ValueError(f"prompt id {int(values[counts > 1][0])} appears twice in one step; "
                         "an allocator gives each prompt one count")
    if pool_size is not None and ids.size and (ids.min() < 0 or ids.max() >= pool_size):
        raise ValueError(f"prompt ids must lie in 0..{pool_size - 1} (the pool), got {ids.min()}..{ids.max()}")
    return ids


def largest_remainder(weights, total: int, minimum=0, maximum: int | None = None) -> np.ndarray:
    """Integer counts proportional to `weights`, each in [minimum, maximum], summing to `total` exactly.

    The real-valued shares are x_i = clip(t * w_i, minimum_i, maximum), with t chosen so that they sum
    to total; each count is floor(x_i) plus one for the entries with the largest fractional parts
    (ties: the earlier entry) until the total is reached. `minimum` is one number or one per entry
    (GVM's floor: prompts above it get a minimum, the others none).

    Zero weights get their minimum, except when the positive-weight entries cannot absorb the total
    (all weights zero, or all positive-weight entries at `maximum`): the rest is then shared evenly
    among the zero-weight entries, so a step never goes without samples.

    Raises ValueError when no allocation fits: sum of the minimums > total or maximum * k < total.

    >>> largest_remainder([1.0, 1.0, 1.0], 10).tolist()
    [4, 3, 3]
    >>> largest_remainder([6.0, 1.0, 1.0], 16, maximum=8).tolist()
    [8, 4, 4]
    >>> largest_remainder([1.0, 0.0, 0.0], 10, minimum=2).tolist()
    [6, 2, 2]
    >>> largest_remainder([9.0, 1.0, 0.0], 10, minimum=[0, 2, 0]).tolist()
    [8, 2, 0]
    """
    w = np.asarray(weights, dtype=np.float64)
    lo = _minimums(minimum, w)
    _check_bounds(w, total, lo, maximum)
    hi = np.inf if maximum is None else float(maximum)
    shares = lo.astype(np.float64)
    positive = w > 0
    rest = total - int(lo[~positive].sum())
    capacity = positive.sum() * hi if positive.any() else 0.0  # 0 * inf would be NaN
    if rest >= capacity:  # the positive-weight entries are all capped: the rest goes to the others
        shares[positive] = hi
        if (~positive).any():
            shares[~positive] = lo[~positive] + (rest - capacity) / (~positive).sum()
    else:
        shares[positive] = _clipped_shares(w[positive], rest, lo[positive].astype(np.float64), hi)
    return _round_preserving_total(shares, total, lo, hi)


def _minimums(minimum, w: np.ndarray) -> np.ndarray:
    lo = np.asarray(minimum)
    if lo.ndim > 1 or (lo.ndim == 1 and lo.shape != w.shape):
        raise ValueError(f"per-prompt minimums must be one number or one per weight ({w.size}), got shape {lo.shape}")
    if lo.size and (lo.dtype.kind not in "iu" and not np.all(np.asarray(lo) == np.floor(lo))):
        raise ValueError("per-prompt minimums must be whole numbers of samples")
    return np.broadcast_to(lo.astype(np.int64), w.shape).copy()


def _check_bounds(w: np.ndarray, total: int, lo: np.ndarray, maximum: int | None) -> None:
    if w.ndim != 1 or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("allocation weights must be a 1-D array of finite, non-negative numbers")
    if int(total) != total or total < 0:
        raise ValueError(f"the sample budget must be a non-negative integer, got {total}")
    if (lo < 0).any() or (maximum is not None and lo.size and maximum < lo.max()):
        minimum = int(lo.min()) if lo.size else 0
        raise ValueError(f"per-prompt bounds must satisfy 0 <= minimum <= maximum, got {minimum}, {maximum}")
    k = w.size
    if lo.sum() > total:
        shown = f"minimum {int(lo[0])} = {int(lo.sum())}" if (lo == lo[0]).all() else f"minimums = {int(lo.sum())}"
        raise ValueError(f"infeasible: {k} prompts x {shown} samples exceed the "
                         f"budget of {total}; lower the minimum or raise the budget")
    if maximum is not None and maximum * k < total:
        raise ValueError(f"infeasible: {k} prompts x maximum {maximum} = {maximum * k} samples fall short of "
                         f"the budget of {total}; raise the maximum (or 0 for no cap) or lower the budget")


def _clipped_shares(w: np.ndarray, total: float, lo: np.ndarray, hi: float) -> np.ndarray:
    """x = clip(t * w, lo, hi) with sum(x) == total, for positive w and sum(lo) <= total < k * hi.

    sum(clip(t * w)) is continuous and non-decreasing in t: bisection finds which entries are
    clipped low or high, then t is solved exactly from the entries in between.
    """
    w = w / w.max()  # t then lives in [0, max(total, hi) / min(w)]
    top = lo.max() if np.isinf(hi) else hi
    low, high = 0.0, max(total, top) / w.min()
    for _ in range(200):
        mid = 0.5 * (low + high)
        if np.clip(mid * w, lo, hi).sum() < total:
            low = mid
        else:
            high = mid
    t = 0.5 * (low + high)
    at_lo, at_hi = t * w <= lo, t * w >= hi
    free = ~(at_lo | at_hi)
    if free.any():
        capped = hi * at_hi.sum() if at_hi.any() else 0.0  # hi may be inf
        t = (total - lo[at_lo].sum() - capped) / w[free].sum()
    return np.clip(t * w, lo, hi)


def _round_preserving_total(shares: np.ndarray, total: int, lo: np.ndarray, hi: float) -> np.ndarray:
    """Floor the shares, then hand the missing units to the largest fractional parts with room left."""
    counts = np.floor(shares + 1e-9).astype(np.int64)  # 2.9999999997 is 3, not 2
    counts = np.clip(counts, lo, None if np.isinf(hi) else int(hi))
    missing = int(total - counts.sum())
    fraction = shares - counts
    if missing > 0:
        room = np.flatnonzero(counts < hi)
        order = room[np.argsort(-fraction[room], kind="stable")]
        counts[order[:missing]] += 1
    elif missing < 0:  # only through floating-point excess: take back from the smallest fractions
        room = np.flatnonzero(counts > lo)
        order = room[np.argsort(fraction[room], kind="stable")]
        counts[order[:-missing]] -= 1
    if counts.sum() != total:
        raise RuntimeError(f"rounding produced {counts.sum()} samples for a budget of {total}; please report this")
    return counts
