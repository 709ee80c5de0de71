"""Predictors by name, each with its settings declared once (name, default, check, meaning).

    predictor = build_predictor("irt", {"ability_step_var": 0.01}, pool_size=len(pool),
                                features=build_features(pool), prior=build_prior(...))

`PREDICTORS[name]` holds the settings dataclass and the builder `build(settings, pool_size, features,
prior)`; `prior` is None (Beta(1, 1)) or per-prompt (a0, b0) arrays (`rollwise.select.priors`), and
`features` a `PromptFeatures` (required by the predictors that share evidence). A configuration
section maps onto `settings_from(name, values)`, which refuses unknown keys by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from rollwise.predict.beta import BetaPredictor
from rollwise.predict.drift import DriftPredictor
from rollwise.predict.irt import IRTPredictor
from rollwise.predict.ngram import NgramPredictor, tfidf_rows


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class BetaSettings:
    """MoPPS's per-prompt posterior."""

    decay: float = 0.5  # lambda: weight of the old posterior at each observation (1 = accumulate)

    def __post_init__(self) -> None:
        _check(0 < self.decay <= 1, f"predict beta: decay must lie in (0, 1], got {self.decay}")


@dataclass(frozen=True)
class DriftSettings:
    """Per-prompt Beta moved by its group's logit shift since the prompt's last observation."""

    decay: float = 0.5        # the per-prompt Beta's decay (as MoPPS)
    group_decay: float = 0.8  # decay of a group's success counts each time the group is observed
    prior_count: float = 2.0  # pseudo-count of the group-rate prior an unseen prompt starts from
    by: str = "group"         # what prompts share a level: group (metadata keys) or cell (group x length)
    decay_to: str = "group"   # what an observed prompt's Beta decays toward: group (its rate) or prior (a0, b0)
    level: str = "rate"       # a group's level from its decayed rate (rate) or fitted to the prompts' surprise (fit)
    level_var: float = 1.0    # level=fit: prior variance of a group's move per observation (logit scale)

    def __post_init__(self) -> None:
        _check(0 < self.decay <= 1 and 0 < self.group_decay <= 1,
               f"predict drift: decay and group_decay must lie in (0, 1], got {self.decay}, {self.group_decay}")
        _check(self.prior_count > 0, f"predict drift: prior_count must be positive, got {self.prior_count}")
        _check(self.by in ("group", "cell"), f"predict drift: by must be group or cell, got {self.by!r}")
        _check(self.decay_to in ("group", "prior"), f"predict drift: decay_to must be group or prior, got {self.decay_to!r}")
        _check(self.level in ("rate", "fit"), f"predict drift: level must be rate or fit, got {self.level!r}")
        _check(self.level_var > 0, f"predict drift: level_var must be positive, got {self.level_var}")


@dataclass(frozen=True)
class IRTSettings:
    """Item response: logit p = ability(group, step) - difficulty(prompt)."""

    prior_var: float = 2.0             # prior variance of a prompt's difficulty (logit scale)
    ability_var: float = 4.0           # prior variance of a group's ability before any observation
    ability_step_var: float = 0.01     # random-walk variance a group's ability gains per step
    difficulty_step_var: float = 0.002 # random-walk variance a prompt's difficulty gains per step unobserved
    cell_shrink: float = 5.0           # pseudo-prompts shrinking a length cell's learned offset to 0
    use_cells: bool = True             # learn difficulty offsets per (group, length bucket) for unseen prompts
    newton_steps: int = 3

    def __post_init__(self) -> None:
        _check(self.prior_var > 0 and self.ability_var > 0, "predict irt: prior_var and ability_var must be positive")
        _check(min(self.ability_step_var, self.difficulty_step_var, self.cell_shrink) >= 0,
               "predict irt: ability_step_var, difficulty_step_var and cell_shrink must be non-negative")
        _check(1 <= self.newton_steps <= 20, f"predict irt: newton_steps must lie in 1..20, got {self.newton_steps}")


@dataclass(frozen=True)
class NgramSettings(IRTSettings):
    """irt whose never-seen prompts also learn from seen prompts of similar text (hashed character 3-grams)."""

    text_weight: float = 1.0  # weight of a seen prompt of cosine similarity 1 against a cell-mate's 1 (0: irt)
    buckets: int = 1 << 16    # hash buckets of the character 3-grams

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.text_weight >= 0, f"predict ngram: text_weight must be non-negative, got {self.text_weight}")
        _check(16 <= self.buckets <= 1 << 22, f"predict ngram: buckets must lie in 16..{1 << 22}, got {self.buckets}")


def _need(features, name: str):
    if features is None:
        raise ValueError(f"predictor {name!r} shares evidence across prompts and needs prompt features "
                         "(rollwise.predict.features.build_features(pool))")
    return features


def _build_beta(s: BetaSettings, pool_size: int, features, prior):
    return BetaPredictor(pool_size, decay=s.decay, prior=prior)


def _build_drift(s: DriftSettings, pool_size: int, features, prior):
    features = _need(features, "drift")
    _check(len(features) == pool_size, f"features cover {len(features)} prompts, the pool has {pool_size}")
    groups = features.group if s.by == "group" else features.cell
    return DriftPredictor(groups, decay=s.decay, group_decay=s.group_decay, prior_count=s.prior_count,
                          decay_to=s.decay_to,  level=s.level, level_var=s.level_var,
                          prior=prior)


def _build_irt(s: IRTSettings, pool_size: int, features, prior):
    features = _need(features, "irt")
    _check(len(features) == pool_size, f"features cover {len(features)} prompts, the pool has {pool_size}")
    return IRTPredictor(features.group, features.cell if s.use_cells else None, prior=prior, **_irt_options(s))


def _irt_options(s: IRTSettings) -> dict:
    """The item-response model's keyword arguments from its settings (shared by irt and ngram)."""
    return dict(prior_var=s.prior_var, ability_var=s.ability_var, ability_step_var=s.ability_step_var,
                difficulty_step_var=s.difficulty_step_var, cell_shrink=s.cell_shrink, newton_steps=s.newton_steps)


def _build_ngram(s: NgramSettings, pool_size: int, features, prior):
    features = _need(features, "ngram")
    _check(len(features) == pool_size, f"features cover {len(features)} prompts, the pool has {pool_size}")
    _check(features.ngram_buckets == s.buckets,
           f"predictor 'ngram' needs features with {s.buckets} n-gram buckets, got {features.ngram_buckets} "
           "(build_features(pool, ngram_buckets=...))")
    text = tfidf_rows(features.ngram_indptr, features.ngram_indices, s.buckets)
    return NgramPredictor(features.group, text, features.cell if s.use_cells else None, text_weight=s.text_weight,
                          prior=prior, **_irt_options(s))


def _no_ngrams(settings) -> int:
    return 0


@dataclass(frozen=True)
class PredictorSpec:
    settings: type
    build: Callable[[Any, int, Any, Any], Any]
    description: str
    ngram_buckets: Callable[[Any], int] = _no_ngrams  # hashed n-gram buckets its prompt features need


PREDICTORS: dict[str, PredictorSpec] = {
    "beta": PredictorSpec(BetaSettings, _build_beta, "MoPPS's per-prompt decayed Beta posterior"),
    "drift": PredictorSpec(DriftSettings, _build_drift,
                           "per-prompt Beta moved by its group's success-rate shift since its last observation"),
    "irt": PredictorSpec(IRTSettings, _build_irt,
                         "item response: group ability refitted every step minus per-prompt difficulty"),
    "ngram": PredictorSpec(NgramSettings, _build_ngram,
                           "irt whose never-seen prompts also learn from seen prompts of similar text",
                           ngram_buckets=lambda s: s.buckets),
}


def ngram_buckets_of(name: str, settings=None) -> int:
    """How many hashed n-gram buckets predictor `name` needs in its prompt features (0: none)."""
    if not dataclasses.is_dataclass(settings):
        settings = settings_from(name, settings)
    return PREDICTORS[name].ngram_buckets(settings)


def settings_from(name: str, values: dict | None = None):
    """The settings dataclass of predictor `name` from plain values; unknown names and keys are errors."""
    if name not in PREDICTORS:
        raise ValueError(f"unknown predictor {name!r}: expected one of {', '.join(PREDICTORS)}")
    cls = PREDICTORS[name].settings
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"predictor {name!r}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**values)


def build_predictor(name: str, settings=None, pool_size: int = 0, features=None, prior=None):
    """A predictor by name; settings a dict of values or the predictor's settings dataclass."""
    if not dataclasses.is_dataclass(settings):
        settings = settings_from(name, settings)
    elif name not in PREDICTORS or not isinstance(settings, PREDICTORS[name].settings):
        raise ValueError(f"settings {type(settings).__name__} do not belong to predictor {name!r}")
    return PREDICTORS[name].build(settings, pool_size, features, prior)


def run_settings(cfg):
    """The settings of the run's predictor (`cfg.predictor`) from its configuration: the beta predictor's
    decay is `mopps_decay` (MoPPS's lambda); every predictor takes `predictor_options` by name."""
    values = {"decay": cfg.mopps_decay} if cfg.predictor == "beta" else {}
    return settings_from(cfg.predictor, {**values, **cfg.predictor_options})


def build_run_predictor(cfg, pool, log=None):
    """The run's one predictor of prompt success, with its prompt features and the configured prior."""
    from rollwise.predict.features import build_features
    from rollwise.select.priors import build_prior

    settings = run_settings(cfg)
    features = build_features(pool, list(cfg.predictor_group_keys) or None,
                              ngram_buckets=ngram_buckets_of(cfg.predictor, settings))
    prior = build_prior(cfg.prior, pool, cfg.prior_weight)
    return build_predictor(cfg.predictor, settings, len(pool), features, prior), features
