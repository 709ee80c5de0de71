"""The drift predictor: group levels, the logit shift, decay targets, the fitted level, state."""

import numpy as np
import pytest
from scipy.special import expit, logit

from rollwise.predict.drift import DriftPredictor


def test_logit_shift_hand_computed():
    p = DriftPredictor(np.array([0, 0, 0, 1]), decay=0.5, group_decay=0.5)
    p.observe(1, [0], [6], [8])
    # group 0: (1 + 6) / (2 + 8) = 0.7; prompt 0 read at 0.7 with 2 pseudo-counts, prior at 0.7 too:
    # a = .5 * 1.4 + .5 * 1.4 + 6 = 7.4, b = .5 * .6 + .5 * .6 + 2 = 2.6
    assert p.a[0] == pytest.approx(7.4) and p.b[0] == pytest.approx(2.6)
    assert p.mean(np.array([1, 3])) == pytest.approx([0.7, 0.5])  # unseen group-mate; other group untouched
    p.observe(2, [1], [0], [8])
    # group 0 counts decay: S = 3, F = 1 + 8 = 9 -> (1 + 3) / (2 + 12) = 2/7
    expected = expit(logit(0.74) + logit(2 / 7) - logit(0.7))
    assert p.mean(np.array([0]))[0] == pytest.approx(expected)
    a, b = p.beta(np.array([0]))
    assert a[0] + b[0] == pytest.approx(10.0)  # the shift keeps the prompt's pseudo-count


def test_decay_to_prior_is_mopps_when_the_group_stays_put():
    from rollwise.predict.beta import BetaPredictor

    drift = DriftPredictor(np.zeros(6, dtype=int), decay=0.5, decay_to="prior", group_decay=1.0)
    beta = BetaPredictor(6, decay=0.5)
    rng = np.random.default_rng(0)
    for step in range(10):  # every group observation at 50%: the level stays at logit(0.5) = 0
        ids = rng.choice(6, 2, replace=False)
        drift.observe(step, ids, [4, 4], [8, 8])
        beta.observe(step, ids, [4, 4], [8, 8])
    assert drift.mean(np.arange(6)) == pytest.approx(beta.mean(np.arange(6)))


def test_fitted_level_ignores_which_prompts_were_picked():
    # a group of an easy and a hard prompt, both known; observing only the hard one at about its
    # predicted rate (1/8 against 0.1) must not drag the level: the raw rate falls toward 1/8
    moved = {}
    for level in ("rate", "fit"):
        p = DriftPredictor(np.zeros(3, dtype=int), decay=1.0, level=level, group_decay=1.0)
        p.observe(1, [0, 1], [8, 0], [8, 8])
        p.observe(2, [2], [4], [8])
        before = p.mean(np.array([0]))[0]
        p.observe(3, [1], [1], [8])
        moved[level] = p.mean(np.array([0]))[0] - before
    assert moved["rate"] < -0.03 and abs(moved["fit"]) < 0.01


def test_state_round_trip_continues_identically():
    p = DriftPredictor(np.array([0, 1, 0, 1, 2]), level="fit")
    p.observe(1, [0, 1], [3, 0], [8, 8])
    q = DriftPredictor(np.array([0, 1, 0, 1, 2]), level="fit")
    q.load_state_dict(p.state_dict())
    for pred in (p, q):
        pred.observe(2, [2, 4], [5, 8], [8, 8])
    assert np.array_equal(p.beta(np.arange(5))[0], q.beta(np.arange(5))[0])
    assert all(isinstance(v, np.ndarray) for v in p.state_dict().values())
    with pytest.raises(ValueError, match="decay_to"):
        DriftPredictor(np.zeros(2, dtype=int), decay_to="nope")
