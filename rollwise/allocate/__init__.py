"""Allocators: how many samples each selected prompt gets (METHODS.md section 3).

`build_allocator(cfg, pool_size, selector)` reads `allocator` (`fixed` | `gvm`) and the `gvm_*`
settings. The recipe's budget per step is `samples_per_prompt` x (prompts of the step); `fixed`
gives each prompt exactly that, `gvm` redistributes it. New allocators are new entries in
`ALLOCATORS`, never branches in the training loop. docs/allocation.md compares them and their costs.
"""

from __future__ import annotations

from rollwise.allocate.base import Allocator, largest_remainder
from rollwise.allocate.fixed import FixedAllocator
from rollwise.allocate.gvm import GVMAllocator, gvm_weights
from rollwise.allocate.registry import ALLOCATORS

__all__ = ["ALLOCATORS", "Allocator", "FixedAllocator", "GVMAllocator", "build_allocator", "gvm_weights",
           "largest_remainder"]


def fixed(cfg, pool_size: int, selector=None) -> FixedAllocator:
    return FixedAllocator(cfg.samples_per_prompt)


def gvm(cfg, pool_size: int, selector=None) -> GVMAllocator:
    """GVM with the config's settings (checked by rollwise.allocate.registry); with gvm_p_source=posterior
    p is the selector's prediction."""
    posterior = selector.predict if cfg.gvm_p_source == "posterior" else None
    return GVMAllocator(pool_size, alpha=cfg.gvm_alpha, beta=cfg.gvm_beta, min_n=cfg.gvm_min_samples,
                        max_n=cfg.gvm_max_samples or None, estimate_every=cfg.gvm_estimate_every,
                        p_source=cfg.gvm_p_source, posterior=posterior, presamples=cfg.gvm_presamples)


def build_allocator(cfg, pool_size: int, selector=None) -> Allocator:
    """The allocator `cfg.allocator` names (rollwise.allocate.registry), for a pool of `pool_size` prompts.

    `selector` is only read with gvm_p_source=posterior (its `predict` gives p).
    """
    return ALLOCATORS.build(cfg.allocator, cfg, pool_size, selector)
