"""The selectors and post-rollout filters users name (`--selector`, `--filter`), each with its checks.

Builders live in `rollwise.select` (`build_selector`, `build_filter`); this module imports nothing heavy so
that a configuration is named and checked before any pool or model exists.
"""

from __future__ import annotations

from rollwise.registry import Registry


def _band(cfg, name: str) -> None:
    lo, hi = getattr(cfg, name)
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"{name}={[lo, hi]}: need 0 <= low <= high <= 1")


def _selection_settings(cfg) -> None:
    if cfg.mopps_candidates < 1:
        raise ValueError(f"mopps_candidates={cfg.mopps_candidates}: must be at least 1")
    if not 0 <= cfg.mopps_target <= 1:
        raise ValueError(f"mopps_target={cfg.mopps_target}: must be in [0, 1]")
    _band(cfg, "mopps_band")
    _band(cfg, "offline_band")
    if cfg.mixed_power <= 0:
        raise ValueError(f"mixed_power={cfg.mixed_power}: must be positive")
    if cfg.offline_samples < 1:
        raise ValueError(f"offline_samples={cfg.offline_samples}: must be at least 1")


SELECTORS = Registry("selector", section="select", settings_check=_selection_settings)
SELECTORS.add("uniform", "rollwise.select:uniform", "B prompts at random, without replacement within an epoch")
SELECTORS.add("mopps", "rollwise.select:mopps", "MoPPS: a Thompson draw of each candidate's predicted success, the B "
              "closest to mopps_target")
SELECTORS.add("mopps-threshold", "rollwise.select:mopps_threshold", "MoPPS: B Thompson draws inside mopps_band at "
              "random")
SELECTORS.add("mixed", "rollwise.select:mixed", "B candidates sampled in proportion to the predicted chance that "
              "their group comes out mixed")
SELECTORS.add("greso", "rollwise.select:greso", "GRESO: skip candidates that stayed zero-variance, with a "
              "probability adapted toward a target share")
SELECTORS.add("offline", "rollwise.select:offline", "the prompts whose initial pass rate (offline_samples each, "
              "paid before step 1) lies in offline_band")


def _filter_settings(cfg) -> None:
    if cfg.ds_max_gen_batches < 1:
        raise ValueError(f"ds_max_gen_batches={cfg.ds_max_gen_batches}: must be at least 1")


FILTERS = Registry("filter", section="select", settings_check=_filter_settings)
FILTERS.add("none", "rollwise.select.filters:no_filter", "train on every group")
FILTERS.add("dynamic", "rollwise.select.filters:dynamic_sampling", "DAPO dynamic sampling: keep groups with mixed "
            "outcomes, drawing up to ds_max_gen_batches generation batches for B of them")
