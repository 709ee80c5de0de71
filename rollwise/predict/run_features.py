"""A run directory's prompt features: its features.npz, or rebuilt from its config.yaml (for replay).

Kept apart from `rollwise.predict.features` because rebuilding needs the run configuration, which itself
names the predictors: the features stay importable by the configuration without an import cycle.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rollwise.predict.features import FEATURES_FILE, PromptFeatures, build_features

log = logging.getLogger("rollwise.predict")


def features_from_config(config_path: str | Path, group_keys: tuple[str, ...] | None = None,
                         ngram_buckets: int = 0):
    """Rebuild a run's training pool from its config.yaml and return (features, pool)."""
    import dataclasses

    from rollwise.config import RunConfig, load_yaml
    from rollwise.data.pool import build_pools

    values = load_yaml(config_path)
    known = {f.name for f in dataclasses.fields(RunConfig)}
    dropped = sorted(set(values) - known)
    if dropped:  # a config written by another rollwise version: only the data keys matter here
        log.warning("%s: ignoring keys this rollwise does not know: %s", config_path, ", ".join(dropped))
    cfg = RunConfig.from_dict({k: v for k, v in values.items() if k in known})
    pool, _ = build_pools(cfg)
    return build_features(pool, group_keys, ngram_buckets=ngram_buckets), pool


def load_run_features(run_dir: str | Path, group_keys: tuple[str, ...] | None = None,
                      ngram_buckets: int = 0) -> PromptFeatures:
    """A run directory's features: its features.npz, else rebuilt from config.yaml (checked by pool hash).

    group_keys or ngram_buckets other than the saved file's force a rebuild from config.yaml.
    """
    run_dir = Path(run_dir)
    saved = run_dir / FEATURES_FILE
    if saved.is_file():
        features = PromptFeatures.load(saved)
        if (group_keys is None or tuple(group_keys) == features.keys) and ngram_buckets in (0, features.ngram_buckets):
            return features
    config = run_dir / "config.yaml"
    if not config.is_file():
        if saved.is_file():
            raise FileNotFoundError(f"{run_dir}: its {FEATURES_FILE} lacks the groups or n-gram buckets asked for "
                                    f"({ngram_buckets} buckets) and there is no config.yaml to rebuild them from; "
                                    f"save {FEATURES_FILE} with them (build_features(pool, ngram_buckets=...))")
        raise FileNotFoundError(f"{run_dir}: neither {FEATURES_FILE} nor config.yaml to rebuild the pool's features")
    features, _ = features_from_config(config, group_keys, ngram_buckets)
    expected = _recorded_pool_hash(run_dir)
    if expected and expected != features.pool_hash:
        raise ValueError(f"{run_dir}: the pool rebuilt from config.yaml differs from the one the run trained on "
                         f"(pool hash {features.pool_hash[:12]} vs {expected[:12]} in run.json); was it made by "
                         "another reasoning-gym version? Save features.npz with the run instead")
    return features


def _recorded_pool_hash(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "run.json").read_text())["identity"]["training pool"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
