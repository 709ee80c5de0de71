"""Synthetic outcome logs with known success rates, for the predictor and replay tests.

Rates follow the item-response model the predictors share evidence under: prompt i of group g has
logit p_i(t) = theta_g(t) - d_i, group abilities rising linearly at different speeds, difficulties
spread around 0; each step draws `batch` prompts uniformly (without replacement within an epoch) and
rolls out `trials` samples of each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.special import expit

from rollwise.predict.features import PromptFeatures
from rollwise.predict.outcomes import OutcomeLog


def synthetic_rates(pool=240, groups=3, steps=60, seed=0):
    """(group per prompt, true rate per step x prompt) under the item-response model."""
    rng = np.random.default_rng(seed)
    group = np.arange(pool) % groups
    difficulty = rng.normal(0.0, 1.2, pool)
    start = np.linspace(-2.5, 1.5, groups)
    speed = np.linspace(0.06, 0.02, groups)
    theta = start[None, :] + speed[None, :] * np.arange(steps + 1)[:, None]
    return group, expit(theta[:, group] - difficulty[None, :])


def synthetic_features(group: np.ndarray) -> PromptFeatures:
    names = np.array([f"synthetic|level={g}" for g in range(int(group.max()) + 1)])
    return PromptFeatures(group=group.astype(np.int64), group_names=names, task=np.zeros(len(group), dtype=np.int64),
                          task_names=np.array(["synthetic"]), length=np.full(len(group), 20.0), keys=("level",))


def write_synthetic_run(run_dir: Path, pool=240, groups=3, steps=60, batch=24, trials=8, seed=0):
    """A run directory with outcomes.jsonl and features.npz; returns (group, rates, log rows as tuples)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    group, rates = synthetic_rates(pool, groups, steps, seed)
    rng = np.random.default_rng(seed + 1)
    log = OutcomeLog(run_dir / "outcomes.jsonl", pool_size=pool, eval_size=4)
    order = rng.permutation(pool)
    cursor, rows = 0, []
    for step in range(1, steps + 1):
        if cursor + batch > pool:
            order, cursor = rng.permutation(pool), 0
        ids = order[cursor: cursor + batch]
        cursor += batch
        successes = rng.binomial(trials, rates[step, ids])
        log.write(step, "train", ids, successes, np.full(batch, trials))
        rows.append((step, ids, successes))
        if step % 20 == 0:
            log.write(step, "eval", [0, 1], [1, 2], [4, 4])
    synthetic_features(group).save(run_dir / "features.npz")
    return group, rates, rows
