"""Prompt selectors: which prompts of the pool each step trains on (docs/methods.md sections 1 and 2).

`build_selector(cfg, pool, predictor)` builds the one `cfg.selector` names: `uniform`, `offline`, and
rules on the run's predictor of prompt success: `mopps` (Thompson Top-B), `mopps-threshold`, `mixed`
(sampling by the chance a group comes out mixed), `greso` (skipping prompts that stayed zero-variance). New selectors are new entries in `rollwise.select.registry.SELECTORS`
(name, builder, checks), never branches in the training loop.
"""

from __future__ import annotations

from rollwise.select.greso import GRESOSkip
from rollwise.select.offline import OfflineFilterSelector
from rollwise.select.predictive import PredictiveSelector
from rollwise.select.registry import SELECTORS
from rollwise.select.rules import MixedChance, ThompsonBand, ThompsonTopB
from rollwise.select.uniform import UniformSelector


def _predictive(cfg, predictor, rule, name: str) -> PredictiveSelector:
    """A rule over the run's shared predictor; the recipe feeds the predictor, so the selector does not."""
    return PredictiveSelector(predictor, rule, candidates=cfg.mopps_candidates, name=name, observes_predictor=False)


def uniform(cfg, pool, predictor) -> UniformSelector:
    return UniformSelector(len(pool))


def mopps(cfg, pool, predictor) -> PredictiveSelector:
    return _predictive(cfg, predictor, ThompsonTopB(cfg.mopps_target), "mopps")


def mopps_threshold(cfg, pool, predictor) -> PredictiveSelector:
    return _predictive(cfg, predictor, ThompsonBand(tuple(cfg.mopps_band)), "mopps-threshold")


def mixed(cfg, pool, predictor) -> PredictiveSelector:
    rule = MixedChance(cfg.samples_per_prompt, source=cfg.mixed_source, power=cfg.mixed_power)
    return _predictive(cfg, predictor, rule, "mixed")


def greso(cfg, pool, predictor) -> PredictiveSelector:
    return _predictive(cfg, predictor, GRESOSkip(len(pool)), "greso")


def offline(cfg, pool, predictor) -> OfflineFilterSelector:
    return OfflineFilterSelector(len(pool), band=tuple(cfg.offline_band), samples=cfg.offline_samples)


def build_selector(cfg, pool, predictor=None):
    """The selector `cfg.selector` names (rollwise.select.registry), for the prompts of `pool`; predictive
    selectors read `predictor` (the run's predictor of prompt success, rollwise.predict)."""
    return SELECTORS.build(cfg.selector, cfg, pool, predictor)
