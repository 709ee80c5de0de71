"""Prompt selectors: which prompts of the pool each step trains on (METHODS.md sections 1 and 2).

`build_selector(cfg, pool)` reads the names users write on the command line and in YAML:
`uniform`, `mopps` (Top-B), `mopps-threshold`, `offline`. New selectors are new entries in
`SELECTORS`, never branches in the training loop.
"""

from __future__ import annotations

from rollwise.select.mopps import MoPPSSelector
from rollwise.select.offline import OfflineFilterSelector
from rollwise.select.priors import build_prior
from rollwise.select.uniform import UniformSelector


def _mopps(cfg, pool, band=None):
    prior = build_prior(cfg.prior, pool, cfg.prior_weight)
    prior_a, prior_b = prior if prior is not None else (None, None)
    return MoPPSSelector(len(pool), decay=cfg.mopps_decay, candidates=cfg.mopps_candidates, target=cfg.mopps_target,
                         band=band, prior_a=prior_a, prior_b=prior_b)


SELECTORS = {
    "uniform": lambda cfg, pool: UniformSelector(len(pool)),
    "mopps": lambda cfg, pool: _mopps(cfg, pool),
    "mopps-threshold": lambda cfg, pool: _mopps(cfg, pool, band=tuple(cfg.mopps_band)),
    "offline": lambda cfg, pool: OfflineFilterSelector(len(pool), band=tuple(cfg.offline_band),
                                                              samples=cfg.offline_samples),
}


def build_selector(cfg, pool):
    if cfg.prior not in ("", "none") and cfg.selector not in ("mopps", "mopps-threshold"):
        raise ValueError(f"prior={cfg.prior!r} only applies to MoPPS selectors, not selector={cfg.selector}")
    return SELECTORS[cfg.selector](cfg, pool)
