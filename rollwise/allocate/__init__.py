"""Allocators: how many samples each selected prompt gets (METHODS.md section 3).

`build_allocator(cfg, pool_size, selector)` reads `allocator` (`fixed` | `gvm`) and the `gvm_*`
settings. The recipe's budget per step is `samples_per_prompt` x (prompts of the step); `fixed`
gives each prompt exactly that, `gvm` redistributes it. New allocators are new entries in
`ALLOCATORS`, never branches in the training loop. docs/allocation.md compares them and their costs.
"""

from __future__ import annotations

import numpy as np

from rollwise.allocate.base import Allocator, largest_remainder
from rollwise.allocate.fixed import FixedAllocator
from rollwise.allocate.gvm import GVMAllocator, gvm_weights

__all__ = ["ALLOCATORS", "Allocator", "FixedAllocator", "GVMAllocator", "build_allocator", "gvm_weights",
           "largest_remainder"]


def _gvm(cfg, pool_size: int, selector) -> GVMAllocator:
    cap = cfg.gvm_max_samples or None  # 0 means no cap
    n_avg = cfg.samples_per_prompt
    if cfg.gvm_min_samples > n_avg or (cap is not None and cap < n_avg):
        raise ValueError(f"gvm_min_samples={cfg.gvm_min_samples} and gvm_max_samples={cfg.gvm_max_samples} must "
                         f"bracket samples_per_prompt={n_avg} (the average per prompt), or no step can be allocated")
    posterior = None
    if cfg.gvm_p_source == "posterior":
        if selector is None or selector.predict(_no_ids()) is None:
            name = getattr(selector, "name", None)
            raise ValueError(f"gvm_p_source=posterior reads p from the selector's prediction, and selector={name} "
                             "makes none; use selector=mopps (or mopps-threshold), or gvm_p_source=presample")
        posterior = selector.predict
    return GVMAllocator(pool_size, alpha=cfg.gvm_alpha, beta=cfg.gvm_beta, min_n=cfg.gvm_min_samples, max_n=cap,
                        estimate_every=cfg.gvm_estimate_every, p_source=cfg.gvm_p_source, posterior=posterior,
                        presamples=cfg.gvm_presamples)


def _no_ids() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


ALLOCATORS = {
    "fixed": lambda cfg, pool_size, selector: FixedAllocator(cfg.samples_per_prompt),
    "gvm": _gvm,
}


def build_allocator(cfg, pool_size: int, selector=None) -> Allocator:
    """The allocator `cfg.allocator` names, for a pool of `pool_size` prompts.

    `selector` is only read with gvm_p_source=posterior (its `predict` gives p).
    """
    if cfg.allocator not in ALLOCATORS:
        raise ValueError(f"allocator={cfg.allocator!r}: expected one of {', '.join(ALLOCATORS)}")
    return ALLOCATORS[cfg.allocator](cfg, pool_size, selector)
