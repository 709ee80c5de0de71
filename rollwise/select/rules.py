"""Selection rules: which k of the candidates to roll out, read from a predictor's Beta per prompt.

A rule never estimates anything itself (GRESO's skip history aside): it reads `predictor.beta(ids)`
(`rollwise.predict`), so every rule works with every predictor.

- `ThompsonTopB` (MoPPS, docs/methods.md section 2): one Thompson draw r_i ~ Beta(a_i, b_i) per candidate,
  keep the k with the smallest |r_i - target|.
- `ThompsonBand` (MoPPS's threshold variant): the draws inside [low, high] at random, filled by
  distance to the band when fewer than k fall inside.
- `MixedChance`: sample k without replacement with probability proportional to w_i^power, w_i the
  chance that prompt i's group of n comes out mixed: 1 - r^n - (1 - r)^n at a Thompson draw r
  (`source="thompson"`) or the beta-binomial P(not all equal) under Beta(a_i, b_i) (`"predictive"`).
  Unlike Top-B it keeps the whole band of learnable prompts in play instead of the ones nearest 0.5.
- `GRESOSkip` (`rollwise.select.greso`): skip prompts that stayed zero-variance.
- `UniformRule`: k candidates at random (the reference; no epoch bookkeeping, see UniformSelector).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from rollwise.predict.base import mixed_chance_of_rate, zero_variance_chance
from rollwise.select.mopps import band_select, top_b


class SelectionRule(Protocol):
    """Chooses k distinct candidates from a predictor's beliefs; stateful rules observe outcomes too."""

    name: str

    def select(self, predictor, candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """k distinct pool indices out of `candidates` (all of them when fewer)."""

    def observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class Stateless:
    """observe / state for rules that keep no state."""

    def observe(self, ids, successes, trials) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ThompsonTopB(Stateless):
    """MoPPS Top-B: the k Thompson draws closest to `target` (default 0.5)."""

    name = "topb"

    def __init__(self, target: float = 0.5) -> None:
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"topb rule: target must lie in [0, 1], got {target}")
        self.target = float(target)

    def select(self, predictor, candidates, k, rng):
        candidates = np.asarray(candidates, dtype=np.int64)
        draws = rng.beta(*predictor.beta(candidates))
        return candidates[top_b(draws, k, self.target)]


class ThompsonBand(Stateless):
    """MoPPS threshold: Thompson draws inside [low, high] at random, filled by distance to the band."""

    name = "band"

    def __init__(self, band: tuple[float, float] = (0.3, 0.7)) -> None:
        low, high = band
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"band rule: band must satisfy 0 <= low <= high <= 1, got {band}")
        self.band = (float(low), float(high))

    def select(self, predictor, candidates, k, rng):
        candidates = np.asarray(candidates, dtype=np.int64)
        draws = rng.beta(*predictor.beta(candidates))
        return candidates[band_select(draws, k, self.band, rng)]


def weighted_sample(weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k positions drawn without replacement, each draw proportional to weight among those left.

    Efraimidis-Spirakis keys log(u) / w, the k largest: one uniform per item and a partial sort,
    O(n). Items of weight 0 are chosen only when fewer than k have weight, then at random.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if k >= weights.size:
        return np.arange(weights.size)
    u = rng.random(weights.size)
    positive = np.flatnonzero(weights > 0)
    keys = np.log(u[positive]) / weights[positive]
    if positive.size > k:
        top = np.argpartition(-keys, k - 1)[:k]
        return positive[top[np.argsort(-keys[top], kind="stable")]]
    rest = np.flatnonzero(weights <= 0)
    fill = rest[np.argsort(u[rest], kind="stable")[: k - positive.size]]
    return np.concatenate([positive[np.argsort(-keys, kind="stable")], fill])


class MixedChance(Stateless):
    """Sample k in proportion to (chance the group comes out mixed) ** power."""

    name = "mixed"

    def __init__(self, samples: int = 8, source: str = "thompson", power: float = 1.0) -> None:
        if samples < 2:
            raise ValueError(f"mixed rule: samples (the group size n) must be at least 2, got {samples}")
        if source not in ("thompson", "predictive"):
            raise ValueError(f"mixed rule: source must be thompson or predictive, got {source!r}")
        if not power > 0:
            raise ValueError(f"mixed rule: power must be positive, got {power}")
        self.samples, self.source, self.power = int(samples), source, float(power)

    def weights(self, predictor, candidates, rng) -> np.ndarray:
        a, b = predictor.beta(candidates)
        if self.source == "thompson":
            chance = mixed_chance_of_rate(rng.beta(a, b), self.samples)
        else:
            chance = 1.0 - zero_variance_chance(a, b, self.samples)
        return np.clip(chance, 0.0, 1.0) ** self.power

    def select(self, predictor, candidates, k, rng):
        candidates = np.asarray(candidates, dtype=np.int64)
        return candidates[weighted_sample(self.weights(predictor, candidates, rng), k, rng)]


class UniformRule(Stateless):
    """k candidates uniformly at random (ignores the predictor)."""

    name = "uniform"

    def select(self, predictor, candidates, k, rng):
        candidates = np.asarray(candidates, dtype=np.int64)
        if k >= candidates.size:
            return candidates.copy()
        return rng.choice(candidates, size=k, replace=False)


def _band(pool_size: int, samples: int, low: float = 0.3, high: float = 0.7) -> ThompsonBand:
    return ThompsonBand((low, high))


def _mixed(pool_size: int, samples: int, **settings) -> MixedChance:
    return MixedChance(**{"samples": samples, **settings})


def _greso(pool_size: int, samples: int, **settings):
    from rollwise.select.greso import GRESOSkip

    return GRESOSkip(pool_size, **settings)


# name -> builder(pool_size, samples, **settings); `samples` is the group size n of the run.
RULES = {
    "topb": lambda pool_size, samples, **settings: ThompsonTopB(**settings),
    "band": _band,
    "mixed": _mixed,
    "greso": _greso,
    "uniform": lambda pool_size, samples: UniformRule(),
}


def build_rule(name: str, settings: dict | None = None, pool_size: int = 0, samples: int = 8):
    """A selection rule by name (`RULES`); a setting the rule does not take is an error naming it."""
    if name not in RULES:
        raise ValueError(f"unknown selection rule {name!r}: expected one of {', '.join(RULES)}")
    try:
        return RULES[name](pool_size, samples, **(settings or {}))
    except TypeError as exc:
        raise ValueError(f"selection rule {name!r}: {exc}") from None
