"""Selection rules on a predictor, PredictiveSelector, and its exact equivalence with MoPPSSelector."""

import numpy as np
import pytest

from rollwise.predict.beta import BetaPredictor
from rollwise.predict.drift import DriftPredictor
from rollwise.select.greso import GRESOSkip
from rollwise.select.mopps import MoPPSSelector
from rollwise.select.predictive import PredictiveSelector
from rollwise.select.rules import (MixedChance, ThompsonBand, ThompsonTopB, UniformRule, build_rule,
                                   weighted_sample)


@pytest.mark.parametrize("band", [None, (0.3, 0.7)])
def test_beta_with_thompson_makes_exactly_moppss_selections(band):
    pool, k = 400, 16
    mopps = MoPPSSelector(pool, decay=0.5, candidates=8, band=band)
    rule = ThompsonTopB(0.5) if band is None else ThompsonBand(band)
    ours = PredictiveSelector(BetaPredictor(pool, decay=0.5), rule, candidates=8)
    rng_a, rng_b, world = np.random.default_rng(7), np.random.default_rng(7), np.random.default_rng(1)
    for _ in range(50):
        eligible = np.flatnonzero(world.random(pool) < 0.8)
        chosen = mopps.select(eligible, k, rng_a)
        assert np.array_equal(chosen, ours.select(eligible, k, rng_b))
        successes = world.integers(0, 9, k)
        mopps.observe(chosen, successes, np.full(k, 8))
        ours.observe(chosen, successes, np.full(k, 8))
        assert rng_a.bit_generator.state == rng_b.bit_generator.state  # same draws, same order
    assert np.array_equal(mopps.predict(np.arange(pool)), ours.predict(np.arange(pool)))


def test_a_mopps_checkpoint_loads_into_the_predictive_selector():
    mopps = MoPPSSelector(10)
    mopps.observe(np.array([1, 2]), np.array([8, 0]), np.array([8, 8]))
    ours = PredictiveSelector(BetaPredictor(10), ThompsonTopB())
    ours.load_state_dict(mopps.state_dict())
    assert np.array_equal(ours.predict(np.arange(10)), mopps.predict(np.arange(10)))


class Fixed:
    """A predictor with given Beta parameters."""

    name = "fixed"

    def __init__(self, a, b):
        self.a, self.b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)

    def beta(self, ids):
        return self.a[ids], self.b[ids]


def test_mixed_chance_avoids_near_certain_groups():
    # prompts 0-2 near 0 or 1 (tiny mixed chance), 3-5 near 0.3-0.7
    pred = Fixed([1, 200, 1, 30, 50, 70], [200, 1, 300, 70, 50, 30])
    rng = np.random.default_rng(0)
    for source in ("thompson", "predictive"):
        rule = MixedChance(samples=8, source=source)
        picks = np.concatenate([rule.select(pred, np.arange(6), 3, rng) for _ in range(200)])
        assert np.isin(picks, [3, 4, 5]).mean() > 0.9  # proportional: a 0.04 weight still comes up now and then


def test_weighted_sample_frequencies_follow_weights():
    rng = np.random.default_rng(0)
    counts = np.zeros(3)
    for _ in range(20_000):
        counts[weighted_sample(np.array([1.0, 2.0, 0.0]), 1, rng)] += 1
    assert counts[2] == 0 and counts[1] / counts[0] == pytest.approx(2.0, rel=0.05)
    assert sorted(weighted_sample(np.array([1.0, 0.0, 0.0]), 2, rng).tolist())[0] == 0  # zero weight fills last


def test_greso_skips_streaks_and_adapts_exploration():
    rule = GRESOSkip(6, target=0.25, p_start=0.5, step=0.01)
    rule.observe(np.array([0, 1, 2, 3]), np.array([8, 0, 0, 4]), np.array([8, 8, 8, 8]))
    rule.observe(np.array([1]), np.array([0]), np.array([8]))
    # prompt 0: easy streak 1 (skip 1 - .5); prompt 1: hard streak 2 (skip 1 - .5^2, p_hard moved once more)
    assert rule.easy_streak[:4].tolist() == [1, 0, 0, 0] and rule.hard_streak[:4].tolist() == [0, 2, 1, 0]
    # first observation: all-right share 1/4 >= 0.25/3 -> p_easy .49; all-wrong 2/4 >= 0.5/3 -> p_hard .49
    # second: all-right 0 < target -> p_easy .50; all-wrong 1 -> p_hard .48
    assert rule.p_easy == pytest.approx(0.50) and rule.p_hard == pytest.approx(0.48)
    skip = rule.skip_probability(np.array([0, 1, 3, 5]))
    assert skip == pytest.approx([1 - 0.5, 1 - 0.48 ** 2, 0.0, 0.0])
    chosen = rule.select(None, np.arange(6), 6, np.random.default_rng(0))
    assert sorted(chosen.tolist()) == list(range(6))  # fewer survivors than k: filled from the skipped


def test_stateful_selector_round_trip_makes_the_same_selections():
    def make():
        return PredictiveSelector(DriftPredictor(np.arange(30) % 3), GRESOSkip(30), candidates=2)

    first, rng, world = make(), np.random.default_rng(3), np.random.default_rng(4)
    for _ in range(5):
        ids = first.select(np.arange(30), 6, rng)
        first.observe(ids, world.integers(0, 9, 6), np.full(6, 8))
    second = make()
    second.load_state_dict(first.state_dict())
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = rng.bit_generator.state
    for _ in range(5):
        a, b = first.select(np.arange(30), 6, rng), second.select(np.arange(30), 6, rng2)
        assert np.array_equal(a, b)
        s = world.integers(0, 9, 6)
        first.observe(a, s, np.full(6, 8))
        second.observe(b, s, np.full(6, 8))
    assert any(k.startswith("rule/") for k in first.state_dict())


def test_build_rule_by_name_and_errors():
    assert isinstance(build_rule("uniform"), UniformRule)
    assert build_rule("band", {"low": 0.2, "high": 0.6}).band == (0.2, 0.6)
    assert build_rule("mixed", {"power": 2}, samples=4).samples == 4
    with pytest.raises(ValueError, match="unknown selection rule"):
        build_rule("nope")
    with pytest.raises(ValueError, match="'topb'"):
        build_rule("topb", {"bogus": 1})
    with pytest.raises(ValueError, match="source"):
        MixedChance(source="nope")
