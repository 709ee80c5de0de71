"""Allocators: the GVM formula and rounding (hand-computed), estimate bookkeeping, state, SPEED (the gradient-norm
estimate: test_gradnorm.py)."""

from types import SimpleNamespace

import numpy as np
import pytest

from rollwise.allocate import build_allocator
from rollwise.config import RunConfig
from rollwise.allocate.base import largest_remainder
from rollwise.allocate.fixed import FixedAllocator
from rollwise.allocate.gvm import GVMAllocator, gvm_weights
from rollwise.select.mopps import MoPPSSelector

NAN = np.nan


# --- the formula and the rounding -------------------------------------------------------------------------


def test_gvm_weights_hand_computed():
    # 1/sqrt(0.5 + 0.001/0.5) = 1/sqrt(0.502) = 1.41139; 1/sqrt(0.1 + 0.01) = 3.01511;
    # 2/sqrt(0.25 + 0.004) = 3.96838; p = 0 and G = 0 give 0.
    w = gvm_weights([0.5, 0.1, 0.0, 1.0, 0.25], [1.0, 1.0, 1.0, 0.0, 2.0])
    assert w == pytest.approx([1.411394, 3.015113, 0.0, 0.0, 3.968379], rel=1e-6)
    # beta = 1: w = G / sqrt(p + alpha) = 1/sqrt(0.501)
    assert gvm_weights([0.5], [1.0], beta=1.0)[0] == pytest.approx(1.412801, rel=1e-6)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        gvm_weights([NAN], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        gvm_weights([0.5], [-1.0])


def test_largest_remainder_exact_total_hand_computed():
    # shares 1.4, 2.1, 3.5 -> floors 1, 2, 3 (6); the missing unit goes to the largest fraction (0.5)
    assert largest_remainder([0.2, 0.3, 0.5], 7).tolist() == [1, 2, 4]
    # equal fractions: earlier entries first
    assert largest_remainder([1.0, 1.0, 1.0], 10).tolist() == [4, 3, 3]
    rng = np.random.default_rng(0)
    for _ in range(200):
        w = rng.random(rng.integers(1, 40)) * (rng.random() < 0.5 and 1e-6 or 1e3)
        total = int(rng.integers(0, 500))
        n = largest_remainder(w, total)
        assert n.sum() == total and n.dtype == np.int64
        assert np.all(np.abs(n - total * w / w.sum()) < 1.0)


def test_largest_remainder_minimum_and_maximum():
    # cap 8: the first takes 8, the other two split the remaining 8 evenly
    assert largest_remainder([6.0, 1.0, 1.0], 16, maximum=8).tolist() == [8, 4, 4]
    # floor 2: 1 * t < 2 for the small ones, the first takes 12 - 4 = 8
    assert largest_remainder([10.0, 1.0, 1.0], 12, minimum=2).tolist() == [8, 2, 2]
    # both: zero weight -> 2; 18 over (10, 5, 1) with t = 1.4 -> 14 capped at 9, 7, 1.4 raised to 2
    assert largest_remainder([10.0, 5.0, 1.0, 0.0], 20, minimum=2, maximum=9).tolist() == [9, 7, 2, 2]
    rng = np.random.default_rng(1)
    for _ in range(200):
        k = int(rng.integers(1, 30))
        lo, hi = int(rng.integers(0, 4)), int(rng.integers(4, 20))
        total = int(rng.integers(lo * k, hi * k + 1))
        n = largest_remainder(rng.random(k) * (rng.random(k) < 0.7), total, lo, hi)
        assert n.sum() == total and n.min() >= lo and n.max() <= hi


def test_largest_remainder_infeasible_bounds_say_why():
    with pytest.raises(ValueError, match="3 prompts x minimum 4 = 12 samples exceed the budget of 10"):
        largest_remainder([1.0, 1.0, 1.0], 10, minimum=4)
    with pytest.raises(ValueError, match="3 prompts x maximum 3 = 9 samples fall short of the budget of 10"):
        largest_remainder([1.0, 1.0, 1.0], 10, maximum=3)
    with pytest.raises(ValueError, match="non-negative"):
        largest_remainder([1.0, -1.0], 4)


def test_zero_weights_share_evenly_when_nothing_else_can_take_the_budget():
    assert largest_remainder([0.0, 0.0, 0.0], 10).tolist() == [4, 3, 3]
    # the only positive entry is capped at 4: the other 6 spread over the zero-weight ones
    assert largest_remainder([1.0, 0.0, 0.0], 10, maximum=4).tolist() == [4, 3, 3]
    # otherwise zero weight means the minimum
    assert largest_remainder([1.0, 0.0, 0.0], 10).tolist() == [10, 0, 0]


# --- the GVM allocator --------------------------------------------------------------------------------------


def _estimated(ids, successes, trials, grads, **kw):
    gvm = GVMAllocator(pool_size=6, **kw)
    gvm.needs_estimate(np.array(ids), step=0)
    gvm.observe(np.array(ids), np.array(successes), np.array(trials), np.array(grads, dtype=float))
    return gvm


def test_gvm_allocation_hand_computed_in_id_order():
    gvm = _estimated([4, 1, 3], [4, 1, 0], [8, 8, 8], [2.0, 2.0, NAN])
    # w = 2/sqrt(0.5 + 0.002) = 2.82279 and 2/sqrt(0.125 + 0.008) = 5.48408; p = 0 -> 0
    # n = 24 * w / 8.30687 = 8.16, 15.84 -> 8, 16, 0
    assert gvm.allocate(np.array([4, 1, 3]), 24).tolist() == [8, 16, 0]
    assert gvm.allocate(np.array([3, 4, 1]), 24).tolist() == [0, 8, 16]


def test_gvm_zero_gradient_norm_gets_nothing_and_bounds_apply():
    gvm = _estimated([0, 1, 2], [4, 4, 2], [8, 8, 8], [0.0, 1.0, 1.0], min_n=2, max_n=12)
    # G = 0 -> weight 0 -> the minimum 2; w(0.5) = 1.41139, w(0.25) = 1.98419: 22 -> 9.14, 12.86 -> cap 12, 10
    assert gvm.allocate(np.array([0, 1, 2]), 24).tolist() == [2, 10, 12]


def test_gvm_all_acceptance_rates_zero_spreads_the_budget_evenly():
    gvm = _estimated([0, 1, 2], [0, 0, 0], [8, 8, 8], [NAN, NAN, NAN])
    assert gvm.allocate(np.array([0, 1, 2]), 16).tolist() == [6, 5, 5]


def test_gvm_unknown_gradient_norm_uses_the_mean_of_known_ones_or_one():
    gvm = _estimated([0, 1, 2], [2, 2, 2], [8, 8, 8], [1.0, 3.0, NAN])
    p, g = gvm.estimates(np.array([0, 1, 2, 5]))
    assert g.tolist() == [1.0, 3.0, 2.0, 2.0]
    assert p[:3].tolist() == [0.25, 0.25, 0.25] and np.isnan(p[3])  # prompt 5 never observed
    _, g = _estimated([0], [0], [8], [NAN]).estimates(np.array([0]))
    assert g.tolist() == [1.0]


def test_gvm_refuses_to_allocate_prompts_never_estimated():
    gvm = _estimated([0], [1], [8], [1.0])
    with pytest.raises(ValueError, match=r"prompt ids \[2\] have no acceptance-rate estimate"):
        gvm.allocate(np.array([0, 2]), 16)


def test_needs_estimate_after_estimate_every_steps():
    gvm = GVMAllocator(pool_size=4, estimate_every=3)
    ids = np.array([0, 1, 2])
    assert gvm.needs_estimate(ids, step=0).tolist() == [True, True, True]
    gvm.observe(ids, np.array([1, 2, 0]), np.array([8, 8, 0]), np.full(3, NAN))  # prompt 2: no trials
    assert gvm.needs_estimate(ids, step=1).tolist() == [False, False, True]
    assert gvm.needs_estimate(ids, step=2).tolist() == [False, False, True]
    gvm.observe(np.array([1]), np.array([3]), np.array([4]), np.array([NAN]))  # main rollout of step 2
    assert gvm.needs_estimate(ids, step=3).tolist() == [True, False, True]
    assert gvm.needs_estimate(ids, step=5).tolist() == [True, True, True]
    every_step = GVMAllocator(pool_size=2)
    every_step.needs_estimate(np.array([0]), step=7)
    every_step.observe(np.array([0]), np.array([1]), np.array([2]), np.array([NAN]))
    assert every_step.needs_estimate(np.array([0]), step=8).tolist() == [True]


def test_observations_pool_within_a_step_and_restart_at_the_next():
    gvm = GVMAllocator(pool_size=2)
    gvm.needs_estimate(np.array([0]), step=0)
    gvm.observe(np.array([0]), np.array([2]), np.array([8]), np.array([1.0]))  # pre-samples: 2 correct, G 1
    gvm.observe(np.array([0]), np.array([6]), np.array([8]), np.array([5.0 / 3]))  # main rollout: 6 correct
    p, g = gvm.estimates(np.array([0]))
    assert p[0] == 0.5 and g[0] == pytest.approx((2 * 1.0 + 6 * 5.0 / 3) / 8)  # 8/16; (2 + 10) / 8 = 1.5
    gvm.needs_estimate(np.array([0]), step=1)
    gvm.observe(np.array([0]), np.array([1]), np.array([4]), np.array([NAN]))
    p, g = gvm.estimates(np.array([0]))
    assert p[0] == 0.25 and g[0] == pytest.approx(1.5)  # G not measured this step: the last one stays


def test_observe_rejects_inconsistent_input():
    gvm = GVMAllocator(pool_size=3)
    with pytest.raises(ValueError, match="no correct sample"):
        gvm.observe(np.array([0]), np.array([0]), np.array([4]), np.array([0.0]))
    with pytest.raises(ValueError, match="appears twice"):
        gvm.observe(np.array([1, 1]), np.array([1, 1]), np.array([4, 4]), np.full(2, NAN))
    with pytest.raises(ValueError, match="between 0 and trials"):
        gvm.observe(np.array([1]), np.array([5]), np.array([4]), np.array([NAN]))


def test_posterior_variant_reads_p_from_the_callable_and_never_presamples():
    selector = MoPPSSelector(pool_size=3, decay=1.0)
    selector.observe(np.array([0, 1]), np.array([3, 0]), np.array([4, 4]))  # Beta(4, 2) and Beta(1, 5)
    calls = []

    def predict(ids):
        calls.append(ids.tolist())
        return selector.predict(ids)

    gvm = GVMAllocator(pool_size=3, p_source="posterior", posterior=predict)
    assert gvm.presamples == 0
    assert gvm.needs_estimate(np.array([0, 1]), step=0).tolist() == [False, False]
    # p = 2/3 and 1/6, G unknown -> 1: w = 1/sqrt(2/3 + 0.0015) = 1.22337, 1/sqrt(1/6 + 0.006) = 2.40655
    # n = 12 * w / 3.62992 = 4.04, 7.96 -> 4, 8
    assert gvm.allocate(np.array([0, 1]), 12).tolist() == [4, 8]
    assert calls == [[0, 1]]
    gvm.observe(np.array([0]), np.array([2]), np.array([4]), np.array([3.0]))  # G of prompt 0 from its visit
    assert gvm.estimates(np.array([0, 1]))[1].tolist() == [3.0, 3.0]


def test_state_dict_round_trip_continues_identically():
    gvm = _estimated([0, 1, 2], [4, 1, 0], [8, 8, 8], [2.0, 1.0, NAN], estimate_every=2)
    state = gvm.state_dict()
    gvm.observe(np.array([0]), np.array([8]), np.array([8]), np.array([9.0]))  # later change: not in state
    restored = GVMAllocator(pool_size=6, estimate_every=2)
    restored.load_state_dict(state)
    fresh = _estimated([0, 1, 2], [4, 1, 0], [8, 8, 8], [2.0, 1.0, NAN], estimate_every=2)
    ids = np.array([2, 0, 1])
    assert restored.allocate(ids, 30).tolist() == fresh.allocate(ids, 30).tolist()
    assert restored.needs_estimate(ids, 1).tolist() == fresh.needs_estimate(ids, 1).tolist() == [False] * 3
    assert restored.needs_estimate(ids, 2).tolist() == [True] * 3
    with pytest.raises(ValueError, match="pool of 6 prompts, this pool has 4"):
        GVMAllocator(pool_size=4).load_state_dict(state)


def test_fixed_allocator():
    fixed = FixedAllocator(4)
    assert fixed.allocate(np.array([5, 1]), 8).tolist() == [4, 4]
    assert fixed.needs_estimate(np.array([5, 1]), 0).tolist() == [False, False]
    with pytest.raises(ValueError, match="budget is 9"):
        fixed.allocate(np.array([5, 1]), 9)


def _cfg(**kw):
    base = dict(allocator="gvm", gvm_alpha=1e-3, gvm_beta=2.0, gvm_presamples=8, gvm_estimate_every=1,
                gvm_min_samples=0, gvm_max_samples=0, gvm_p_source="presample", samples_per_prompt=8, gvm_p_floor=0.0,
                speed_screen=4)
    base.update(kw)
    return SimpleNamespace(**base)


def test_build_allocator_reads_the_config_names():
    fixed = build_allocator(_cfg(allocator="fixed", samples_per_prompt=6), pool_size=5)
    assert isinstance(fixed, FixedAllocator) and fixed.n == 6
    gvm = build_allocator(_cfg(gvm_max_samples=0, gvm_min_samples=2, gvm_presamples=4, gvm_estimate_every=3), 5)
    assert (gvm.max_n, gvm.min_n, gvm.presamples, gvm.estimate_every) == (None, 2, 4, 3)
    assert build_allocator(_cfg(gvm_max_samples=16), 5).max_n == 16
    predictor = BetaStandIn(MoPPSSelector(5))
    posterior = build_allocator(_cfg(gvm_p_source="posterior"), 5, predictor)
    assert posterior.p_source == "posterior" and posterior.presamples == 0 and posterior.predictor is predictor
    with pytest.raises(ValueError, match="must bracket samples_per_prompt=8"):  # checked with the configuration
        RunConfig(allocator="gvm", gvm_min_samples=9)
    with pytest.raises(ValueError, match="allocator='knapsack'"):
        build_allocator(_cfg(allocator="knapsack"), 5)


# --- GVM on a predictor, the floor, the cap; SPEED screening -------------------------------------------------


class BetaStandIn:
    """A predictor stand-in wrapping a MoPPS selector's a / b arrays, as the run's predictor would give them."""

    def __init__(self, selector):
        self.selector = selector

    def beta(self, ids):
        return self.selector.a[ids].copy(), self.selector.b[ids].copy()

    def mean(self, ids):
        return self.selector.predict(ids)


def test_gvm_predictor_source_adds_this_steps_presamples_to_the_predictors_beta():
    selector = MoPPSSelector(pool_size=4, decay=1.0)
    selector.observe(np.array([0, 1]), np.array([3, 0]), np.array([4, 8]))  # Beta(4, 2) and Beta(1, 9)
    gvm = GVMAllocator(pool_size=4, p_source="predictor", presamples=4, predictor=BetaStandIn(selector))
    ids = np.array([0, 1, 2])
    assert gvm.needs_estimate(ids, step=3).tolist() == [True, True, True]
    gvm.observe(ids, np.array([0, 0, 0]), np.array([4, 4, 4]), np.full(3, NAN))  # four failures each
    selector.observe(ids, np.array([0, 0, 0]), np.array([4, 4, 4]))  # the predictor may see them too: not counted twice
    p, _ = gvm.estimates(ids)
    # (a + s) / (a + b + k) with the Beta read at needs_estimate: 4/10, 1/14, and Beta(1, 1) + 0/4 = 1/6 (never 0)
    assert p == pytest.approx([0.4, 1 / 14, 1 / 6])
    gvm.observe(np.array([0]), np.array([4]), np.array([4]), np.array([1.0]))  # the main rollout: same step, pooled
    assert gvm.estimates(np.array([0]))[0] == pytest.approx([8 / 14])
    flat = GVMAllocator(pool_size=4, p_source="predictor", presamples=4)  # no predictor: Beta(1, 1)
    flat.needs_estimate(ids, step=0)
    flat.observe(ids, np.array([0, 2, 4]), np.array([4, 4, 4]), np.full(3, NAN))
    assert flat.estimates(ids)[0] == pytest.approx([1 / 6, 1 / 2, 5 / 6])


def test_gvm_never_allocates_zero_to_a_prompt_above_the_floor():
    # p = 0.03 x 3 (G 1), 0.97 x 2 (G 0.1), 0.005 (G 1): w = 3.973, 0.1015 and 2.209 (1 / sqrt(0.005 + 0.2)).
    # Uncapped, without a minimum, 12 samples are 3.33 x 3, 0.085 x 2, 1.85 -> 4, 3, 3, 0, 0, 2: the p = 0.97
    # prompts starve. With the floor 0.02 and a minimum of 2: the p = 0.005 prompt gets weight 0 and no minimum,
    # the p = 0.97 ones 2 each, the rest 8 / 3 = 2.67 each -> 3, 3, 2.
    selector = MoPPSSelector(pool_size=6, decay=1.0)
    selector.a[:] = [3, 3, 3, 97, 97, 1]
    selector.b[:] = [97, 97, 97, 3, 3, 199]
    ids = np.arange(6)

    def allocator(**kw):
        gvm = GVMAllocator(pool_size=6, p_source="posterior", predictor=BetaStandIn(selector), **kw)
        gvm.needs_estimate(ids, step=0)
        gvm.observe(ids, np.ones(6), np.ones(6), np.array([1.0, 1.0, 1.0, 0.1, 0.1, 1.0]))
        return gvm

    assert allocator().allocate(ids, 12).tolist() == [4, 3, 3, 0, 0, 2]
    gvm = allocator(min_n=2, p_floor=0.02)
    assert gvm.allocate(ids, 12).tolist() == [3, 3, 2, 2, 2, 0]
    rng = np.random.default_rng(4)
    for _ in range(200):  # the property, on random predictions and budgets
        selector.a[:] = rng.uniform(0.01, 20, 6)
        selector.b[:] = rng.uniform(0.01, 20, 6)
        p = selector.predict(ids)
        counts = gvm.allocate(ids, int(rng.integers(12, 60)))
        assert (counts[p > 0.02] >= 2).all() and counts.sum() >= 12


def test_the_auto_cap_and_the_floor_are_read_from_the_config():
    from rollwise.allocate import max_samples

    assert (max_samples(-1, 8), max_samples(0, 8), max_samples(5, 8)) == (16, None, 5)
    gvm = build_allocator(_cfg(gvm_max_samples=-1, gvm_p_floor=0.05, gvm_p_source="predictor"), 5)
    assert gvm.max_n == 16 and gvm.p_floor == 0.05 and gvm.presamples == 8
    predictor = BetaStandIn(MoPPSSelector(5))
    assert build_allocator(_cfg(gvm_p_source="predictor", gvm_presamples=4), 5, predictor).predictor is predictor
    with pytest.raises(ValueError, match="main rollout, 4 on average after pre-samples"):
        RunConfig(allocator="gvm", gvm_min_samples=5, gvm_presamples=4)
    RunConfig(allocator="gvm", gvm_p_source="predictor", gvm_presamples=0)  # p from the predictor alone


def test_speed_screens_every_prompt_and_gives_the_rest_to_the_mixed_ones():
    from rollwise.allocate.speed import SpeedAllocator

    speed = build_allocator(_cfg(allocator="speed", speed_screen=2, samples_per_prompt=6), 10)
    assert isinstance(speed, SpeedAllocator) and speed.presamples == 2 and not speed.needs_grad_norms
    ids = np.array([7, 3, 5, 1, 0])
    assert speed.needs_estimate(ids, step=4).tolist() == [True] * 5
    speed.observe(ids, np.array([0, 1, 2, 1, 1]), np.array([2, 2, 2, 2, 2]), np.full(5, NAN))
    budget = 6 * 5 - 2 * 5  # the budget identity: screening + the rest = samples_per_prompt x prompts
    counts = speed.allocate(ids, budget)
    assert counts.tolist() == [0, 7, 0, 7, 6] and counts.sum() == budget  # 20 over 3 mixed: 7, 7, 6
    speed.observe(ids, counts * 0, counts, np.full(5, NAN))  # the main rollout does not change the verdicts
    assert speed.allocate(ids, budget).tolist() == [0, 7, 0, 7, 6]
    speed.needs_estimate(np.array([2, 4]), step=5)  # a new step forgets the last one's verdicts
    speed.observe(np.array([2, 4]), np.array([0, 2]), np.array([2, 2]), np.full(2, NAN))
    assert speed.allocate(np.array([2, 4]), 8).tolist() == [4, 4]  # nothing mixed: spread evenly
    with pytest.raises(ValueError, match=r"prompt ids \[7\] were not screened"):
        speed.allocate(np.array([7]), 4)
