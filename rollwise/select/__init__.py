"""Prompt selectors: which prompts of the pool each step trains on (docs/methods.md sections 1 and 2).

`build_selector(cfg, pool)` builds the one `cfg.selector` names: `uniform`, `mopps` (Top-B),
`mopps-threshold`, `offline`. New selectors are new entries in `rollwise.select.registry.SELECTORS`
(name, builder, checks), never branches in the training loop.
"""

from __future__ import annotations

from rollwise.select.mopps import MoPPSSelector
from rollwise.select.offline import OfflineFilterSelector
from rollwise.select.priors import build_prior
from rollwise.select.registry import SELECTORS
from rollwise.select.uniform import UniformSelector


def _mopps(cfg, pool, band=None) -> MoPPSSelector:
    prior = build_prior(cfg.prior, pool, cfg.prior_weight)
    prior_a, prior_b = prior if prior is not None else (None, None)
    return MoPPSSelector(len(pool), decay=cfg.mopps_decay, candidates=cfg.mopps_candidates, target=cfg.mopps_target,
                         band=band, prior_a=prior_a, prior_b=prior_b)


def uniform(cfg, pool) -> UniformSelector:
    return UniformSelector(len(pool))


def mopps(cfg, pool) -> MoPPSSelector:
    return _mopps(cfg, pool)


def mopps_threshold(cfg, pool) -> MoPPSSelector:
    return _mopps(cfg, pool, band=tuple(cfg.mopps_band))


def offline(cfg, pool) -> OfflineFilterSelector:
    return OfflineFilterSelector(len(pool), band=tuple(cfg.offline_band), samples=cfg.offline_samples)


def build_selector(cfg, pool):
    """The selector `cfg.selector` names (rollwise.select.registry), for the prompts of `pool`."""
    return SELECTORS.build(cfg.selector, cfg, pool)
