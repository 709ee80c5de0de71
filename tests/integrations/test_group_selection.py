"""GroupSelection: the verl plug-in's framework-free core (choices one row at a time, outcomes per group)."""

from __future__ import annotations

import numpy as np
import pytest

from rollwise.allocate import build_allocator
from rollwise.config import RunConfig
from rollwise.integrations.group_selection import GroupSelection
from rollwise.select.mopps import MoPPSSelector


def mopps_selection(pool=20, n=4, allocator="fixed", seed=0, **gvm):
    selector = MoPPSSelector(pool)
    cfg = RunConfig(selector="mopps", samples_per_prompt=n, allocator=allocator, gvm_p_source="posterior", **gvm)
    return GroupSelection(selector, seed, samples_per_prompt=n, allocator=build_allocator(cfg, pool, selector))


def take_step(sel, k):
    return [sel.take(k) for _ in range(k)]


def test_a_step_hands_out_k_distinct_prompts_drawn_at_once():
    sel = mopps_selection()
    step = take_step(sel, 5)
    ids = [pid for pid, _ in step]
    assert len(set(ids)) == 5 and all(n == 4 for _, n in step)
    assert sel.generation == 1  # one draw for the whole step
    assert not sel.queue and sum(len(w) for w in sel.waiting.values()) == 5


def test_outcomes_update_the_selector_and_void_undispatched_prompts():
    sel = mopps_selection()
    first = sel.take(5)[0]
    assert len(sel.queue) == 4
    a_before = sel.selector.a[first]
    row = sel.observe_groups([first], [3], [4])
    assert sel.selector.a[first] == pytest.approx(0.5 * a_before + 0.5 * 1.0 + 3)  # decayed, then 3 successes
    assert not sel.queue  # drawn before this outcome existed: drawn again
    assert row["acc_mean"] == pytest.approx(0.75)
    assert first not in sel.waiting
    sel.take(5)
    assert sel.generation == 2


def test_groups_of_one_prompt_are_one_observation_and_match_a_replay():
    sel = mopps_selection(pool=6, n=2)
    replay = MoPPSSelector(6)
    pid = sel.take(3)[0]
    sel.take(3)
    sel.observe_groups([pid, pid], [1, 2], [2, 2])  # the same prompt finished twice (handed out twice)
    replay.observe(np.array([pid]), np.array([3.0]), np.array([4.0]))
    np.testing.assert_allclose(sel.selector.a, replay.a)
    np.testing.assert_allclose(sel.selector.b, replay.b)


def test_predictions_are_those_made_before_the_outcome():
    sel = mopps_selection(pool=10)
    step = take_step(sel, 4)
    ids = np.array([pid for pid, _ in step])
    predicted_then = sel.selector.predict(ids)
    sel.observe_groups(ids[:2], [4, 0], [4, 4])  # changes the posteriors of the first two
    sel.observe_groups(ids[2:], [0, 0], [4, 4])
    assert sel.records[-1]["predicted"] == pytest.approx(predicted_then[2:].tolist())
    assert sel.records[-2]["predicted"] == pytest.approx(predicted_then[:2].tolist())


def test_outcomes_of_prompts_never_handed_out_are_still_observed_without_a_prediction():
    sel = mopps_selection(pool=10)
    row = sel.observe_groups([7], [1], [2])
    assert sel.records[-1]["predicted"] is None and "pred_mae" not in row
    assert sel.seen[7]


def test_gvm_budget_sums_to_k_times_n_and_follows_the_posterior():
    sel = mopps_selection(pool=8, n=4, allocator="gvm", gvm_min_samples=1)
    # prompts 0-3 always solved, 4-7 rarely: GVM gives the rarely solved ones more samples
    for _ in range(6):
        sel.observe_groups(np.arange(8), [4, 4, 4, 4, 1, 1, 1, 1], [4] * 8)
    step = take_step(sel, 8)
    counts = dict(step)
    assert sum(counts.values()) == 32 and min(counts.values()) >= 1
    assert np.mean([counts[i] for i in range(4, 8)]) > np.mean([counts[i] for i in range(4)])


def test_state_round_trip_continues_exactly():
    sel = mopps_selection(allocator="gvm", gvm_min_samples=1)
    for _ in range(3):
        step = take_step(sel, 5)
        sel.observe_groups([p for p, _ in step], [min(s, n) for s, (_, n) in zip([1, 0, 2, 4, 3], step)],
                           [n for _, n in step])
    sel.take(5)  # one handed out, four queued, at the checkpoint
    state = sel.state_dict()
    twin = mopps_selection(allocator="gvm", gvm_min_samples=1, seed=99)
    twin.load_state_dict(state)
    for _ in range(2):
        a = take_step(sel, 5)
        b = take_step(twin, 5)
        assert a == b
        outcome = [min(s, n) for s, (_, n) in zip([1, 1, 0, 0, 2], a)]
        sel.observe_groups([p for p, _ in a], outcome, [n for _, n in a])
        twin.observe_groups([p for p, _ in b], outcome, [n for _, n in b])
    np.testing.assert_allclose(sel.selector.a, twin.selector.a)
    assert sel.records[-1] == twin.records[-1]


def test_bad_outcomes_are_refused():
    sel = mopps_selection(pool=5)
    with pytest.raises(ValueError, match="lie in"):
        sel.observe_groups([5], [1], [1])
    with pytest.raises(ValueError, match="successes"):
        sel.observe_groups([1], [3], [2])
    with pytest.raises(ValueError, match="samples_per_prompt"):
        GroupSelection(MoPPSSelector(5), 0, samples_per_prompt=0)
