"""Prediction quality and group statistics: how well a selector knows the pool, and what a batch held.

Spearman rank correlation and mean absolute error compare a selector's predicted success rate (read
before the rollout is observed, so it never peeks at the outcome) with the observed success rate of
the same step. docs/methods.md section 2: published > 0.5 and rising early in training.
"""

from __future__ import annotations

import numpy as np


def spearman(predicted, observed) -> float | None:
    """Spearman rank correlation (average ranks for ties); None when either side is constant.

    >>> spearman([0.1, 0.5, 0.9], [0.0, 0.25, 1.0])
    1.0
    """
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def mae(predicted, observed) -> float | None:
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    if x.size == 0:
        return None
    return float(np.abs(x - y).mean())


def group_stats(successes: np.ndarray, trials: np.ndarray) -> dict:
    """Zero-variance groups (all wrong or all right) among the groups rolled out this step."""
    successes, trials = np.asarray(successes), np.asarray(trials)
    all_zero = int(np.sum(successes == 0))
    all_one = int(np.sum(successes == trials))
    groups = max(len(trials), 1)
    return {"zero_var_ratio": (all_zero + all_one) / groups, "all_zero_groups": all_zero, "all_one_groups": all_one}
