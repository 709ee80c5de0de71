"""How well predicted success rates match observed ones: the measures `rollwise replay` reports.

All take per-group arrays: the predicted rate p (a Beta's mean, read before the group was observed),
the group's successes s out of n trials, and for the zero-variance AUC the predicted chance that the
group comes out all wrong or all right.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from rollwise.select.quality import spearman

__all__ = ["spearman", "spearman_ties_broken", "mean_abs_error", "brier", "auc", "calibration",
           "expected_calibration_error"]


def spearman_ties_broken(predicted, observed, seed: int = 0) -> float | None:
    """Spearman with ties among the *predictions* broken at random (observed ties keep average ranks).

    Plain Spearman credits a predictor for exact ties that coincide with tied observations: a
    per-prompt Beta gives every prompt with the same history the very same value, and when half a
    step's groups come out 0/8, those ties alone add several points (measured: docs/prediction.md).
    Breaking them at random measures only the ordering a predictor commits to.

    >>> spearman_ties_broken([0.2, 0.2, 0.9], [0.0, 0.0, 1.0]) < spearman([0.2, 0.2, 0.9], [0.0, 0.0, 1.0])
    True
    """
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    if x.size < 2 or np.ptp(y) == 0:
        return None
    shuffle = np.random.default_rng(seed).random(x.size)
    rx = np.empty(x.size)
    rx[np.lexsort((shuffle, x))] = np.arange(1, x.size + 1)
    return float(np.corrcoef(rx, rankdata(y))[0, 1])


def mean_abs_error(p, s, n) -> float | None:
    """Mean over groups of |p - s / n|."""
    p, s, n = (np.asarray(x, dtype=np.float64) for x in (p, s, n))
    return float(np.abs(p - s / n).mean()) if p.size else None


def brier(p, s, n) -> float | None:
    """Brier score per completion: mean of (p - y)^2 over every 0/1 outcome (s ones, n - s zeros).

    >>> brier([0.5], [1], [2])
    0.25
    """
    p, s, n = (np.asarray(x, dtype=np.float64) for x in (p, s, n))
    if not n.sum():
        return None
    return float(((n - s) * p * p + s * (1 - p) ** 2).sum() / n.sum())


def auc(score, positive) -> float | None:
    """Area under the ROC curve of `score` for the boolean `positive` (ties count half); None if one class.

    >>> auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    """
    score, positive = np.asarray(score, dtype=np.float64), np.asarray(positive, dtype=bool)
    pos, neg = int(positive.sum()), int((~positive).sum())
    if not pos or not neg:
        return None
    ranks = rankdata(score)
    return float((ranks[positive].sum() - pos * (pos + 1) / 2) / (pos * neg))


def calibration(p, s, n, bins: int = 10) -> list[dict]:
    """Reliability bins of equal width in p: groups, mean predicted rate, observed rate (trial-weighted)."""
    p, s, n = (np.asarray(x, dtype=np.float64) for x in (p, s, n))
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        if m.any():
            out.append({"low": b / bins, "high": (b + 1) / bins, "groups": int(m.sum()),
                        "predicted": float(p[m].mean()), "observed": float(s[m].sum() / n[m].sum())})
    return out


def expected_calibration_error(bins: list[dict]) -> float | None:
    """Group-weighted mean |predicted - observed| over the reliability bins."""
    total = sum(b["groups"] for b in bins)
    if not total:
        return None
    return float(sum(b["groups"] * abs(b["predicted"] - b["observed"]) for b in bins) / total)
