"""Allocators: how many samples each selected prompt gets (METHODS.md section 3).

`build_allocator(cfg, pool_size, selector, predictor)` reads `allocator` (`fixed` | `gvm` | `speed`)
and the `gvm_*` / `speed_*` settings. The recipe's budget per step is `samples_per_prompt` x (prompts
of the step); `fixed` gives each prompt exactly that, `gvm` redistributes it by GVM's weights, `speed`
screens every prompt with a few samples and gives the rest to the prompts that came out mixed. New
allocators are new entries in `ALLOCATORS`, never branches in the training loop. docs/allocation.md
compares them and their costs.
"""

from __future__ import annotations

import numpy as np

from rollwise.allocate.base import (Allocator, BetaPredictor, FlatPrior, SelectorBeta, largest_remainder,
                                    predictor_of)
from rollwise.allocate.fixed import FixedAllocator
from rollwise.allocate.gvm import GVMAllocator, gvm_weights
from rollwise.allocate.speed import SpeedAllocator

__all__ = ["ALLOCATORS", "Allocator", "BetaPredictor", "FixedAllocator", "FlatPrior", "GVMAllocator",
           "SelectorBeta", "SpeedAllocator", "build_allocator", "gvm_weights", "largest_remainder", "max_samples",
           "predictor_of"]

AUTO_CAP_FACTOR = 2  # gvm_max_samples = -1: at most twice the average per prompt (no prompt takes the step)


def max_samples(setting: int, n_avg: int) -> int | None:
    """The per-prompt cap a `gvm_max_samples` setting means: -1 auto (2 x n_avg), 0 none, else itself.

    >>> max_samples(-1, 8), max_samples(0, 8), max_samples(12, 8)
    (16, None, 12)
    """
    if setting == -1:
        return AUTO_CAP_FACTOR * n_avg
    return setting or None


def _gvm(cfg, pool_size: int, selector, predictor) -> GVMAllocator:
    cap = max_samples(cfg.gvm_max_samples, cfg.samples_per_prompt)
    n_avg = cfg.samples_per_prompt
    main_avg = n_avg - (cfg.gvm_presamples if cfg.gvm_p_source != "posterior" else 0)
    if cfg.gvm_min_samples > main_avg or (cap is not None and cap < n_avg):
        raise ValueError(f"gvm_min_samples={cfg.gvm_min_samples} and gvm_max_samples={cfg.gvm_max_samples} must "
                         f"bracket samples_per_prompt={n_avg} (the average per prompt; the minimum applies to the "
                         f"main rollout, {main_avg} on average after pre-samples), or no step can be allocated")
    predictor = predictor if predictor is not None else predictor_of(selector)
    posterior = None
    if cfg.gvm_p_source == "posterior":
        if predictor is None and (selector is None or selector.predict(_no_ids()) is None):
            name = getattr(selector, "name", None)
            raise ValueError(f"gvm_p_source=posterior reads p from the selector's prediction, and selector={name} "
                             "makes none; use selector=mopps (or mopps-threshold), or gvm_p_source=presample")
        posterior = predictor.mean if predictor is not None else selector.predict
    return GVMAllocator(pool_size, alpha=cfg.gvm_alpha, beta=cfg.gvm_beta, min_n=cfg.gvm_min_samples, max_n=cap,
                        estimate_every=cfg.gvm_estimate_every, p_source=cfg.gvm_p_source, posterior=posterior,
                        presamples=cfg.gvm_presamples, predictor=predictor, p_floor=cfg.gvm_p_floor)


def _speed(cfg, pool_size: int, selector, predictor) -> SpeedAllocator:
    return SpeedAllocator(cfg.speed_screen, cfg.samples_per_prompt)


def _no_ids() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


ALLOCATORS = {
    "fixed": lambda cfg, pool_size, selector, predictor: FixedAllocator(cfg.samples_per_prompt),
    "gvm": _gvm,
    "speed": _speed,
}


def build_allocator(cfg, pool_size: int, selector=None, predictor: BetaPredictor | None = None) -> Allocator:
    """The allocator `cfg.allocator` names, for a pool of `pool_size` prompts.

    GVM reads p from `predictor` (the run's predictor of prompt success) where one is given, else from
    the selector's Beta posteriors (MoPPS), else, for gvm_p_source=predictor, from Beta(1, 1).
    """
    if cfg.allocator not in ALLOCATORS:
        raise ValueError(f"allocator={cfg.allocator!r}: expected one of {', '.join(ALLOCATORS)}")
    return ALLOCATORS[cfg.allocator](cfg, pool_size, selector, predictor)
