"""Collecting one step's groups: selection, rollout, verification and dynamic sampling, with fakes."""

import numpy as np

from rollwise.allocate import FixedAllocator, GVMAllocator
from rollwise.rollout.engine import GenRequest
from rollwise.rollout.modes import PartialPaths
from rollwise.rollout.rpo import PartialRollouts
from rollwise.rollout.shaping import RewardShaping
from rollwise.select.filters import DynamicSampling, NoFilter
from rollwise.select.mopps import MoPPSSelector
from rollwise.select.uniform import UniformSelector
from rollwise.track import Timer
from tests.support.fakes import PatternEngine, collect, context


def test_no_filter_trains_on_every_group_and_counts_cost():
    got = collect(context(30), UniformSelector(30), NoFilter(), FixedAllocator(4), 6, 4, 1, np.random.default_rng(0), Timer())
    assert len(got.kept) == 6 and got.rollouts == 24 and got.tokens == 48 and got.gen_batches == 1
    assert not got.capped and (got.predicted() == 0.5).all()  # every run predicts: the prior before any outcome


def test_dynamic_sampling_keeps_only_effective_groups_and_pays_for_discards():
    got = collect(context(60), UniformSelector(60), DynamicSampling(max_gen_batches=10), FixedAllocator(4), 6, 4, 1,
                  np.random.default_rng(0), Timer())
    assert len(got.kept) == 6 and all(g.index % 3 == 2 for g in got.kept)
    assert got.gen_batches >= 2 and got.rollouts == 4 * len(got.rolled_out) > 24
    assert len({g.index for g in got.rolled_out}) == len(got.rolled_out)  # never a group twice


def test_dynamic_sampling_at_its_cap_trains_on_what_it_has():
    got = collect(context(60), UniformSelector(60), DynamicSampling(max_gen_batches=2), FixedAllocator(4), 12, 4, 1,
                  np.random.default_rng(1), Timer())
    assert got.capped and got.gen_batches == 2 and len(got.rolled_out) == 24
    assert 0 < len(got.kept) < 12 and all(g.index % 3 == 2 for g in got.kept)
    assert len({g.index for g in got.kept}) == len(got.kept)


def test_dynamic_sampling_when_the_pool_runs_out():
    got = collect(context(9), UniformSelector(9), DynamicSampling(max_gen_batches=5), FixedAllocator(4), 6, 4, 1,
                  np.random.default_rng(0), Timer())
    assert len(got.rolled_out) == 9 and len(got.kept) == 3 and got.capped
    assert got.gen_batches == 2  # 6 + 3 prompts: two batches paid for, not a third empty one


def test_prediction_metrics_survive_a_pool_that_runs_out():
    got = collect(context(9), MoPPSSelector(9, decay=1.0), DynamicSampling(max_gen_batches=5), FixedAllocator(4), 6, 4, 1,
                  np.random.default_rng(0), Timer())
    assert got.gen_batches == 2 and got.predicted() is not None and len(got.predicted()) == 9


def test_selector_observes_every_paid_group_and_predicts_before_observing():
    selector = MoPPSSelector(30, decay=1.0)
    got = collect(context(30), selector, DynamicSampling(max_gen_batches=3), FixedAllocator(4), 4, 4, 1, np.random.default_rng(0), Timer())
    assert got.predicted() is not None and np.all(got.predicted() == 0.5)  # prior means: before the update
    observed = [g.index for g in got.rolled_out]
    assert (selector.a[observed] + selector.b[observed] == 6).all()


def test_gvm_spends_the_same_budget_and_moves_samples_to_informative_prompts():
    ctx = context(30)
    ctx.grad_norms = lambda samples: np.ones(len(samples))  # equal G: the weights follow p alone
    gvm = GVMAllocator(30, presamples=4)
    got = collect(ctx, UniformSelector(30), NoFilter(), gvm, 12, 8, 1, np.random.default_rng(0), Timer())
    assert got.rollouts == 12 * 8 and got.presampled == 12  # pre-samples are part of the budget
    sizes = {g.index % 3: len(g.acc) for g in got.rolled_out}
    # p = 0 (pattern 0): its 4 pre-samples only; p = 0.5 gets more than p = 1 (w = G / sqrt(p + alpha / p))
    assert sizes[0] == 4 and sizes[2] > sizes[1] >= 4
    assert all(len(g.acc) == len(g.samples) == len(g.rewards) for g in got.rolled_out)


def test_a_prompt_allotted_nothing_drops_out_of_the_step():
    ctx = context(9)
    gvm = GVMAllocator(9, p_source="posterior", posterior=lambda ids: np.where(np.asarray(ids) % 3 == 0, 0.0, 0.5))
    selector = MoPPSSelector(9, decay=1.0)
    got = collect(ctx, selector, NoFilter(), gvm, 6, 4, 1, np.random.default_rng(0), Timer())
    assert got.rollouts == 24 and got.presampled == 0
    assert len(got.rolled_out) + got.unallocated == 6  # selected: rolled out, or counted as unallocated
    assert all(g.index % 3 != 0 for g in got.rolled_out) and got.unallocated >= 1
    assert got.predicted() is not None and len(got.predicted()) == len(got.rolled_out)
    unvisited = [i for i in range(9) if i % 3 == 0]
    assert (selector.a[unvisited] + selector.b[unvisited] == 2).all()  # never observed: still the prior


# ------------------------------------------------------------------------------- partial rollouts (RPO)


class ContinuingEngine(PatternEngine):
    """PatternEngine's verdicts, continuing each request's prefix within its own limit; records requests.

    A full rollout writes [answer, 5, 5, EOS=99]; a continuation writes the rest of that path after the
    prefix (the answer token first when the prefix is empty), cut to the request's limit."""

    def __init__(self):
        self.seen = []

    def generate(self, requests, params):
        self.seen.extend(requests)
        out = super().generate([GenRequest(r.prompt_ids, r.n) for r in requests], params)
        for req, group in zip(requests, out):
            for s in group:
                path = [s.completion_ids[0], 5, 5, 99]  # 99: EOS here (answer tokens are the ids, 1 among them)
                s.prefix_ids = req.prefix_ids
                s.completion_ids = path[len(req.prefix_ids):][: req.limit(params)]
                s.finished = s.completion_ids[-1:] == [99]
        return out


def partial_context(n_prompts, cached=True, **shaping):
    ctx = context(n_prompts)
    ctx.engine = ContinuingEngine()
    ctx.partial = PartialRollouts(n_prompts, "half_min", "limit", 0.5, max_new_tokens=6, eos_token_id=99)
    ctx.mode = PartialPaths(ctx.partial, upfront_fill=False)
    if cached:  # every prompt's cached path answers right: [id, 5, 5, EOS]
        ctx.partial.cache.put_many(np.arange(n_prompts), [[i, 5, 5, 99] for i in range(n_prompts)], step=0)
    if shaping:
        ctx.shaping = RewardShaping(**{"length_aware": False, "alpha": 0.01, "reference": "all", "max_len": 6,
                                       **shaping})
    return ctx


def test_partial_groups_continue_one_prefix_within_their_budget():
    ctx = partial_context(6)
    got = collect(ctx, UniformSelector(6), NoFilter(), FixedAllocator(4), 6, 4, 1, np.random.default_rng(0), Timer())
    for g in got.rolled_out:
        prefixes = {s.prefix_ids for s in g.samples}
        assert len(prefixes) == 1  # one cut per group
        (prefix,) = prefixes
        assert 1 <= 4 - len(prefix) <= 2 and prefix == (g.index, 5, 5)[: len(prefix)]  # m in 1..half of 4
    budgets = {r.prefix_ids: r.max_new_tokens for r in ctx.engine.seen}
    assert all(b == 6 - len(p) for p, b in budgets.items())  # 'limit': the full-path limit minus the prefix
    assert got.tokens == sum(len(s.completion_ids) for g in got.rolled_out for s in g.samples)
    assert got.prefix_tokens == sum(len(s.prefix_ids) for g in got.rolled_out for s in g.samples) > 0
    row = ctx.partial.finish_step(got.rolled_out, np.random.default_rng(1), step=1)
    assert row["rpo_partial_groups"] == 6 and row["rpo_refreshed"] == 6 and row["rpo_cache_age_mean"] == 1


def test_gvm_pre_samples_and_main_samples_share_the_prefix_of_their_group():
    ctx = partial_context(12)
    ctx.grad_norms = lambda samples: np.ones(len(samples))
    got = collect(ctx, UniformSelector(12), NoFilter(), GVMAllocator(12, presamples=2), 6, 4, 1,
                  np.random.default_rng(0), Timer())
    assert got.presampled == 6 and got.rollouts == 24
    for g in got.rolled_out:
        assert len({s.prefix_ids for s in g.samples}) == 1 and len(g.samples) >= 2
    row = ctx.partial.finish_step(got.rolled_out, np.random.default_rng(1), step=1)
    assert row["rpo_partial_groups"] == 6  # one plan per generation batch: pre-samples add no groups


def test_shaping_changes_rewards_and_leaves_acc_to_the_filter_and_selector():
    # Whole groups (nothing cached) keep PatternEngine's mixed verdicts; a 6-token buffer under a 6-token
    # limit puts every length inside the ramp, so every reward drops.
    ctx = partial_context(6, cached=False, overlong_buffer=6)
    selector = MoPPSSelector(6, decay=1.0)
    got = collect(ctx, selector, DynamicSampling(2), FixedAllocator(4), 6, 4, 1, np.random.default_rng(0), Timer())
    for g in got.rolled_out:
        lengths = np.array([len(s.prefix_ids) + len(s.completion_ids) for s in g.samples])
        assert np.allclose(g.rewards, g.acc - lengths / 6)
    assert got.kept and all(g.index % 3 == 2 for g in got.kept)  # dynamic sampling filters on acc, not rewards
    observed = [g.index for g in got.rolled_out]
    assert (selector.a[observed] + selector.b[observed] == 6).all()  # the selector counted 4 trials each


def test_uncached_prompts_roll_out_whole_groups_and_fill_the_cache():
    ctx = partial_context(6, cached=False)
    got = collect(ctx, UniformSelector(6), NoFilter(), FixedAllocator(4), 6, 4, 1, np.random.default_rng(0), Timer())
    assert all(s.prefix_ids == () for g in got.rolled_out for s in g.samples)
    assert all(r.max_new_tokens is None for r in ctx.engine.seen)  # the sampling limit
    ctx.partial.finish_step(got.rolled_out, np.random.default_rng(1), step=1)
    assert len(ctx.partial.cache) == 6


class LimitIgnoringEngine(ContinuingEngine):
    """Writes 3 extra tokens past every path: an engine that does not honour request limits."""

    def generate(self, requests, params):
        out = super().generate([GenRequest(r.prompt_ids, r.n, r.prefix_ids, None) for r in requests], params)
        for group in out:
            for s in group:
                s.completion_ids = s.completion_ids + [5, 5, 5]
        return out


def test_an_engine_past_its_limits_is_clipped_and_its_extra_tokens_booked():
    ctx = partial_context(6)
    ctx.engine = LimitIgnoringEngine()
    ctx.partial.budget = "exact"  # budget m: everything past the cut is extra
    got = collect(ctx, UniformSelector(6), NoFilter(), FixedAllocator(4), 6, 4, 1, np.random.default_rng(0), Timer())
    for g in got.rolled_out:
        m = 4 - len(g.samples[0].prefix_ids)
        assert all(len(s.completion_ids) == m for s in g.samples)  # cut back to the budget
        assert g.clipped_tokens == 3 * len(g.samples) and g.tokens == (m + 3) * len(g.samples)
