"""The per-prompt Beta predictor is MoPPS's posterior; kinds, validation and state."""

import numpy as np
import pytest

from rollwise.predict.base import checked_observation, mixed_chance_of_rate, zero_variance_chance
from rollwise.predict.beta import BetaPredictor
from rollwise.select.mopps import MoPPSSelector


def test_decayed_update_hand_computed():
    p = BetaPredictor(4, decay=0.5)
    p.observe(1, np.array([1, 3]), np.array([8, 0]), np.array([8, 8]))
    # prompt 1: a = .5 * 1 + .5 * 1 + 8 = 9, b = 1; prompt 3: a = 1, b = 9
    assert p.a.tolist() == [1.0, 9.0, 1.0, 1.0] and p.b.tolist() == [1.0, 1.0, 1.0, 9.0]
    p.observe(2, np.array([1]), np.array([4]), np.array([8]))
    assert (p.a[1], p.b[1]) == (9.0, 5.0)  # .5 * 9 + .5 + 4, .5 * 1 + .5 + 4
    assert p.mean(np.array([1]))[0] == pytest.approx(9 / 14)


def test_per_prompt_prior_is_the_decay_target():
    p = BetaPredictor(2, decay=0.5, prior=(np.array([4.0, 1.0]), np.array([1.0, 4.0])))
    assert p.mean(np.array([0, 1])).tolist() == [0.8, 0.2]
    p.observe(1, np.array([0]), np.array([0]), np.array([2]))
    assert (p.a[0], p.b[0]) == (4.0, 3.0)  # .5 * 4 + .5 * 4 + 0, .5 * 1 + .5 * 1 + 2
    with pytest.raises(ValueError, match="positive"):
        BetaPredictor(2, prior=(np.array([0.0, 1.0]), np.ones(2)))


def test_same_posteriors_as_mopps_selector():
    rng = np.random.default_rng(0)
    mopps, pred = MoPPSSelector(50, decay=0.7), BetaPredictor(50, decay=0.7)
    for step in range(20):
        ids = rng.choice(50, 10, replace=False)
        s = rng.integers(0, 9, 10)
        mopps.observe(ids, s, np.full(10, 8))
        pred.observe(step, ids, s, np.full(10, 8))
    assert np.array_equal(mopps.a, pred.a) and np.array_equal(mopps.b, pred.b)
    assert mopps.state_dict().keys() == pred.state_dict().keys()


def test_kinds_partial_ignored_eval_refused_and_bad_input():
    p = BetaPredictor(3)
    p.observe(1, [0], [5], [8], kind="partial")
    assert p.a.tolist() == [1.0, 1.0, 1.0]
    for kind in ("presample", "probe", "prefilter"):
        p.observe(1, [0], [1], [2], kind=kind)
    assert p.a[0] > 1
    with pytest.raises(ValueError, match="held-out"):
        p.observe(1, [0], [1], [2], kind="eval")
    with pytest.raises(ValueError, match="twice"):
        p.observe(1, [1, 1], [1, 1], [2, 2])
    with pytest.raises(ValueError, match="outside the pool"):
        p.observe(1, [3], [1], [2])
    with pytest.raises(ValueError, match="between 0 and trials"):
        checked_observation([0], [3], [2], 3, "train")


def test_state_round_trip_plain_arrays():
    p = BetaPredictor(5)
    p.observe(1, [0, 2], [3, 8], [8, 8])
    state = p.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    q = BetaPredictor(5)
    q.load_state_dict(state)
    assert np.array_equal(q.beta(np.arange(5))[0], p.beta(np.arange(5))[0])
    with pytest.raises(ValueError, match="shape"):
        BetaPredictor(4).load_state_dict(state)


def test_zero_variance_and_mixed_chances_hand_computed():
    # Beta(1, 1) is uniform: P(all 0 of 2) = P(all 2 of 2) = 1/3
    assert zero_variance_chance(1.0, 1.0, 2) == pytest.approx(2 / 3)
    # Beta(1, 9), n = 8: P(0) = B(1, 17) / B(1, 9) = 9 / 17; P(8) = B(9, 9) / B(1, 9)
    from scipy.special import beta as B
    assert zero_variance_chance(1.0, 9.0, 8) == pytest.approx(9 / 17 + B(9, 9) / B(1, 9))
    assert mixed_chance_of_rate(0.2, 8) == pytest.approx(1 - 0.2 ** 8 - 0.8 ** 8)
