"""Allocators: how many samples each selected prompt gets (docs/methods.md section 3).

`build_allocator(cfg, pool_size, predictor)` builds the one `cfg.allocator` names
(`rollwise.allocate.registry`): `fixed` gives each prompt `samples_per_prompt`; `gvm` redistributes the
step's budget (`samples_per_prompt` x prompts) by GVM's weights, reading p from the run's predictor of
prompt success where its settings say so; `speed` screens every prompt with a few samples and gives the
rest to the prompts that came out mixed. New allocators are new registry entries, never branches in
the training loop. docs/allocation.md compares them and their costs.
"""

from __future__ import annotations

from rollwise.allocate.base import Allocator, BetaPredictor, FlatPrior, largest_remainder
from rollwise.allocate.fixed import FixedAllocator
from rollwise.allocate.gvm import GVMAllocator, gvm_weights
from rollwise.allocate.registry import ALLOCATORS, max_samples
from rollwise.allocate.speed import SpeedAllocator

__all__ = ["ALLOCATORS", "Allocator", "BetaPredictor", "FixedAllocator", "FlatPrior", "GVMAllocator",
           "SpeedAllocator", "build_allocator", "gvm_weights", "largest_remainder", "max_samples"]


def fixed(cfg, pool_size: int, predictor=None) -> FixedAllocator:
    return FixedAllocator(cfg.samples_per_prompt)


def gvm(cfg, pool_size: int, predictor: BetaPredictor | None = None) -> GVMAllocator:
    """GVM with the config's settings (checked by the registry): p from pre-samples, from the predictor's
    mean (`posterior`), or from its Beta updated with this step's pre-samples (`predictor`)."""
    posterior = predictor.mean if cfg.gvm_p_source == "posterior" and predictor is not None else None
    return GVMAllocator(pool_size, alpha=cfg.gvm_alpha, beta=cfg.gvm_beta, min_n=cfg.gvm_min_samples,
                        max_n=max_samples(cfg.gvm_max_samples, cfg.samples_per_prompt),
                        estimate_every=cfg.gvm_estimate_every, p_source=cfg.gvm_p_source, posterior=posterior,
                        presamples=cfg.gvm_presamples, predictor=predictor, p_floor=cfg.gvm_p_floor)


def speed(cfg, pool_size: int, predictor=None) -> SpeedAllocator:
    return SpeedAllocator(cfg.speed_screen, cfg.samples_per_prompt)


def build_allocator(cfg, pool_size: int, predictor: BetaPredictor | None = None) -> Allocator:
    """The allocator `cfg.allocator` names, for a pool of `pool_size` prompts; `predictor` is the run's
    predictor of prompt success (rollwise.predict), read by GVM."""
    return ALLOCATORS.build(cfg.allocator, cfg, pool_size, predictor)
