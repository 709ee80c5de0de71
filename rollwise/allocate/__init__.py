"""Allocators: how many samples each selected prompt gets (METHODS.md section 3).

`build_allocator(cfg, pool_size, selector, predictor)` builds the one `allocator` names (`fixed` | `gvm` |
`speed`, rollwise.allocate.registry) with its `gvm_*` / `speed_*` settings. The recipe's budget per step
is `samples_per_prompt` x (prompts of the step); `fixed` gives each prompt exactly that, `gvm`
redistributes it by GVM's weights, `speed` screens every prompt with a few samples and gives the rest to
the prompts that came out mixed. docs/allocation.md compares them and their costs.
"""

from __future__ import annotations

from rollwise.allocate.base import Allocator, BetaPredictor, FlatPrior, SelectorBeta, largest_remainder, predictor_of
from rollwise.allocate.fixed import FixedAllocator
from rollwise.allocate.gvm import GVMAllocator, gvm_weights
from rollwise.allocate.registry import ALLOCATORS, max_samples
from rollwise.allocate.speed import SpeedAllocator

__all__ = ["ALLOCATORS", "Allocator", "BetaPredictor", "FixedAllocator", "FlatPrior", "GVMAllocator",
           "SelectorBeta", "SpeedAllocator", "build_allocator", "gvm_weights", "largest_remainder", "max_samples",
           "predictor_of"]


def fixed(cfg, pool_size: int, selector=None, predictor=None) -> FixedAllocator:
    return FixedAllocator(cfg.samples_per_prompt)


def gvm(cfg, pool_size: int, selector=None, predictor: BetaPredictor | None = None) -> GVMAllocator:
    """GVM with the config's settings (checked by rollwise.allocate.registry). p is read from `predictor`
    where one is given, else from the selector's predictor (its Beta posteriors); gvm_p_source=predictor
    without either reads Beta(1, 1)."""
    predictor = predictor if predictor is not None else predictor_of(selector)
    posterior = None
    if cfg.gvm_p_source == "posterior":
        posterior = predictor.mean if predictor is not None else selector.predict
    return GVMAllocator(pool_size, alpha=cfg.gvm_alpha, beta=cfg.gvm_beta, min_n=cfg.gvm_min_samples,
                        max_n=max_samples(cfg.gvm_max_samples, cfg.samples_per_prompt),
                        estimate_every=cfg.gvm_estimate_every, p_source=cfg.gvm_p_source, posterior=posterior,
                        presamples=cfg.gvm_presamples, predictor=predictor, p_floor=cfg.gvm_p_floor)


def speed(cfg, pool_size: int, selector=None, predictor=None) -> SpeedAllocator:
    return SpeedAllocator(cfg.speed_screen, cfg.samples_per_prompt)


def build_allocator(cfg, pool_size: int, selector=None, predictor: BetaPredictor | None = None) -> Allocator:
    """The allocator `cfg.allocator` names (rollwise.allocate.registry), for a pool of `pool_size` prompts.

    GVM reads p from `predictor` (the run's predictor of prompt success) where one is given, else from the
    selector's (its Beta posteriors: MoPPS, a predictive selector), else, for gvm_p_source=predictor, Beta(1, 1).
    """
    return ALLOCATORS.build(cfg.allocator, cfg, pool_size, selector, predictor)
