"""The item-response predictor: Newton updates, moments, sharing within a group and a cell, state."""

import numpy as np
import pytest
from scipy.special import expit

from rollwise.predict.irt import (IRTPredictor, logit_normal_moments, moment_matched_beta, newton_ability,
                                  newton_difficulty)


def test_one_newton_step_of_a_difficulty_hand_computed():
    mu, var, theta, s, n = 0.5, 2.0, 1.0, 2.0, 8.0
    p = expit(theta - mu)
    expected = mu + (-(s - n * p)) / (1 / var + n * p * (1 - p))
    d, _ = newton_difficulty(np.array([mu]), np.array([var]), np.array([theta]), np.array([s]), np.array([n]), steps=1)
    assert d[0] == pytest.approx(expected)


def test_converged_updates_solve_their_equations():
    d, v = newton_difficulty(np.array([0.0]), np.array([2.0]), np.array([1.0]), np.array([1.0]), np.array([8.0]), 20)
    p = expit(1.0 - d[0])
    assert -(d[0] - 0.0) / 2.0 - (1.0 - 8.0 * p) == pytest.approx(0.0, abs=1e-9)
    assert v[0] == pytest.approx(1 / (1 / 2.0 + 8 * p * (1 - p)))
    groups = np.array([0, 0, 1])
    offsets, scale = np.array([0.5, -0.5, 0.0]), np.ones(3)
    s, n = np.array([6.0, 7.0, 1.0]), np.full(3, 8.0)
    t, _ = newton_ability(np.zeros(2), np.ones(2), offsets, scale, s, n, groups, steps=20)
    p = expit(t[groups] - offsets)
    grad = np.bincount(groups, s - n * p, 2) - t / 1.0
    assert grad == pytest.approx([0.0, 0.0], abs=1e-9)


def test_logit_normal_moments_and_moment_matching():
    rng = np.random.default_rng(0)
    m, v = np.array([-1.0, 0.5]), np.array([0.5, 2.0])
    mean, var = logit_normal_moments(m, v)
    draws = expit(m + np.sqrt(v) * rng.standard_normal((400_000, 2)))
    assert mean == pytest.approx(draws.mean(0), abs=2e-3) and var == pytest.approx(draws.var(0), abs=2e-3)
    a, b = moment_matched_beta(mean, var)
    assert a / (a + b) == pytest.approx(mean)
    assert a * b / ((a + b) ** 2 * (a + b + 1)) == pytest.approx(var)


def test_unseen_prompts_move_with_their_group_and_cell():
    groups, cells = np.array([0, 0, 0, 0, 1]), np.array([0, 0, 1, 1, 2])
    p = IRTPredictor(groups, cells, cell_shrink=1.0)
    before = p.mean(np.arange(5))
    p.observe(1, [0, 2], [8, 4], [8, 8])
    after = p.mean(np.arange(5))
    assert after[1] > before[1] and after[3] > before[3]   # unseen group-mates rose
    assert after[1] > after[3]                             # ... most in the cell whose prompt solved 8/8
    assert after[4] == pytest.approx(before[4])            # the other group did not move


def test_ability_walks_and_difficulty_uncertainty_grows_between_visits():
    p = IRTPredictor(np.zeros(3, dtype=int), ability_step_var=0.1, difficulty_step_var=0.05)
    p.observe(1, [0, 1], [4, 4], [8, 8])
    _, var_then = p.logit_moments(np.array([0]))
    p.observe(11, [2], [4], [8])
    _, var_later = p.logit_moments(np.array([0]))
    assert var_later[0] > var_then[0]


def test_state_round_trip_continues_identically():
    groups, cells = np.array([0, 1, 0, 1]), np.array([0, 1, 2, 1])
    p = IRTPredictor(groups, cells)
    p.observe(1, [0, 1], [3, 0], [8, 8])
    q = IRTPredictor(groups, cells)
    q.load_state_dict(p.state_dict())
    for pred in (p, q):
        pred.observe(4, [2, 3], [5, 8], [8, 8])
    assert np.array_equal(p.beta(np.arange(4))[0], q.beta(np.arange(4))[0])
    assert all(isinstance(v, (np.ndarray, float)) for v in p.state_dict().values())
