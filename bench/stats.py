"""The statistics every benchmark script reports, in one place: a mean over seeds with its standard error,
the ratio of two costs, and costs read off a compare summary (to its target, or to targets part of the way
from the baseline's start to it).
"""

from __future__ import annotations

import numpy as np

from rollwise.evidence.summary import summarize
from rollwise.rollout.evaluate import standard_error


def mean_se(values, key: str = "per_seed") -> dict:
    """The mean and standard error (rollwise.rollout.evaluate.standard_error: 0.0 for a single value) of the
    values present, and every value (None kept, where a seed has none) under `key`; mean and se are None
    when no value is present.

    >>> mean_se([1.0, 2.0, None, 3.0])
    {'mean': 2.0, 'se': 0.5773502691896258, 'per_seed': [1.0, 2.0, None, 3.0]}
    """
    values = [None if v is None else float(v) for v in values]
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "se": None, key: values}
    return {"mean": float(np.mean(present)), "se": standard_error(present), key: values}


def cost_ratio(numerator, denominator) -> float | None:
    """numerator / denominator, or None when either is missing (a target never reached) or zero. With the
    baseline's cost over a variant's it is how many times less the variant spent (a speed-up); the other way
    round, the fraction of the baseline's cost the variant needed."""
    return numerator / denominator if numerator and denominator else None


def mean_curve_cost(summary: dict, variant: str, key: str):
    """A variant's cost to reach the target on the mean curve over seeds (None: never reached)."""
    return summary["variants"][variant]["to_target"]["mean_curve"].get(key)


def at_gain_fractions(loaded: dict[str, list[dict]], final: float, metric: str, fractions) -> list[dict]:
    """Summaries (as `summarize` gives them, for `mean_curve_cost`) at targets part of the way from the
    baseline's start (mean step-0 `metric` of the first variant's runs) to `final`: a speed-up depends on
    how far along its target is, and at the baseline's own final accuracy it is knife-edge when a variant
    ends level with it."""
    baseline = loaded[next(iter(loaded))]
    initial = sum(run["rows"][0][metric] for run in baseline) / len(baseline)
    rows = []
    for fraction in fractions:
        target = initial + fraction * (final - initial)
        rows.append({"fraction": fraction, "target": target, "summary": summarize(loaded, target, metric)})
    return rows


# Speed-ups are also measured part of the way to the baseline's final accuracy: at the final itself the ratio
# is knife-edge (a variant that ends level with the baseline, 0.0005 below, counts as never reaching it), and a
# variant that ends level can still get there first.
GAIN_FRACTIONS = (0.5, 0.75)


def speedups_by_gain(summary: dict, loaded: dict, base: str, variant: str,
                     fractions=GAIN_FRACTIONS) -> dict[str, float | None]:
    """A variant's speed-up in steps over the base (mean curves) to targets a fraction of the way from the
    base's start to the summary's target, keyed by the fraction as a string (JSON keys)."""
    speedups = {}
    for row in at_gain_fractions(loaded, summary["target"], summary["metric"], fractions):
        steps_base, steps_variant = (mean_curve_cost(row["summary"], v, "steps") for v in (base, variant))
        speedups[str(row["fraction"])] = cost_ratio(steps_base, steps_variant)
    return speedups
