"""Collecting one step's groups: selection, rollout, verification and dynamic sampling, with fakes."""

import numpy as np

from rollwise.allocate import FixedAllocator, GVMAllocator
from rollwise.filters import DynamicSampling, NoFilter
from rollwise.pool import PoolItem, PromptPool
from rollwise.rollout.collect import RolloutContext, collect
from rollwise.rollout.engine import Sample, SamplingParams
from rollwise.select.mopps import MoPPSSelector
from rollwise.select.uniform import UniformSelector
from rollwise.tasks.base import Score
from rollwise.track import Timer


class FakeCodec:
    eos_token_id, pad_token_id = 1, 0

    def prompt_ids(self, item):
        return [2, item.id]

    def decode(self, ids):
        return " ".join(map(str, ids))

    def answer(self, completion):
        return completion.split()[0]  # the answer token; the EOS follows it


class PatternEngine:
    """Prompt i answers right in sample j when pattern[i % 3][j]: all wrong, all right, or mixed."""

    patterns = {0: [0, 0, 0, 0], 1: [1, 1, 1, 1], 2: [1, 0, 1, 0]}

    def generate(self, requests, params):
        out = []
        for r, req in enumerate(requests):
            pid = req.prompt_ids[1]
            out.append([Sample(r, req.prompt_ids, (), [pid if self.patterns[pid % 3][j % 4] else 999, 1], True)
                        for j in range(req.n)])
        return out


class ExactVerifier:
    def score_batch(self, answers, items):
        return [Score(a == str(it.id), float(a == str(it.id))) for a, it in zip(answers, items)]

    def pop_counts(self):
        return {}


def context(n_prompts):
    pool = PromptPool([PoolItem(id=i, prompt=f"q{i}", answer=str(i)) for i in range(n_prompts)], "file", "fake")
    return RolloutContext(pool, FakeCodec(), PatternEngine(), ExactVerifier(), SamplingParams(), "acc")


def test_no_filter_trains_on_every_group_and_counts_cost():
    got = collect(context(30), UniformSelector(30), NoFilter(), FixedAllocator(4), 6, 4, 1, np.random.default_rng(0), Timer())
    assert len(got.kept) == 6 and got.rollouts == 24 and got.tokens == 48 and got.gen_batches == 1
    assert not got.capped and got.predicted is None


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
    assert got.gen_batches == 2 and got.predicted is not None and len(got.predicted) == 9


def test_selector_observes_every_paid_group_and_predicts_before_observing():
    selector = MoPPSSelector(30, decay=1.0)
    got = collect(context(30), selector, DynamicSampling(max_gen_batches=3), FixedAllocator(4), 4, 4, 1, np.random.default_rng(0), Timer())
    assert got.predicted is not None and np.all(got.predicted == 0.5)  # prior means: before the update
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
    assert got.predicted is not None and len(got.predicted) == len(got.rolled_out)
    unvisited = [i for i in range(9) if i % 3 == 0]
    assert (selector.a[unvisited] + selector.b[unvisited] == 2).all()  # never observed: still the prior
