"""RPO that tracks the policy: whole-path samples in a plan, the refresh rules and the age of cached tokens,
prefix hints (lengths, plans, the loss mask, what the refresh keeps). The runs are in test_rpo_run.py."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rollwise.algos.update import build_batch
from rollwise.rollout.cache import ExperienceCache
from rollwise.rollout.engine import GenRequest, Sample
from rollwise.rollout.hints import PrefixHints, hint_lengths
from rollwise.rollout.partial import PartialPlan, cut_lengths, partial_requests
from rollwise.rollout.refresh import refresh_paths
from rollwise.rollout.rpo import PartialRollouts

EOS = 1


class RandomEngine:
    """Stands in for the policy: each sample is 1-6 random tokens (2..9) then EOS, within its limit."""

    def __init__(self, seed=0, limit=12):
        self.rng = np.random.default_rng(seed)
        self.limit = limit

    def generate(self, requests, params=None):
        out = []
        for r, req in enumerate(requests):
            limit = req.max_new_tokens or self.limit - len(req.prefix_ids)
            group = []
            for _ in range(req.n):
                body = self.rng.integers(2, 10, size=int(self.rng.integers(1, 7))).tolist()[: limit - 1]
                group.append(Sample(r, req.prompt_ids, req.prefix_ids, body + [EOS], True))
            out.append(group)
        return out


def visit(rpo, indices, engine, rng, step, n=4, acc=None):
    """One step of the recipe's use of PartialRollouts: plan, generate, regroup, verify (stub), refresh."""
    plan = rpo.plan(np.asarray(indices), lambda i: [100 + i], rng, step)
    samples, _ = plan.finish(engine.generate(plan.with_counts(n)))
    rpo.record(plan, samples)
    groups = [SimpleNamespace(index=int(i), samples=s,
                              acc=np.asarray(acc(s) if acc else np.zeros(len(s)), dtype=np.float64),
                              rewards=np.asarray(acc(s) if acc else np.zeros(len(s)), dtype=np.float64))
              for i, s in zip(indices, samples)]
    return plan, samples, rpo.finish_step(groups, rng, step)


def _rpo(**kw):
    base = dict(pool_size=3, cut="half_min", budget="limit", epsilon=0.5, max_new_tokens=12, eos_token_id=EOS)
    return PartialRollouts(**{**base, **kw})


# --- the property the published refresh lacks -----------------------------------------------------------------


def test_every_token_of_a_cached_path_is_rewritten_at_every_visit_under_the_whole_refresh():
    rpo, engine, rng = _rpo(refresh="whole", whole_samples=1), RandomEngine(), np.random.default_rng(0)
    for step in range(1, 9):
        visit(rpo, [0, 1, 2], engine, rng, step)
        for i in range(3):  # a fresh whole path each visit: every token born at this step
            assert rpo.cache.births(i).tolist() == [step] * len(rpo.cache.get(i))
    row = visit(rpo, [0, 1, 2], engine, rng, 9)[2]
    assert row["rpo_oldest_age_max"] == 0 and row["rpo_stale_share"] == 0.0 and row["rpo_refreshed_whole"] == 3


def test_the_published_suffix_refresh_never_rewrites_the_start_of_a_path():
    rpo, engine, rng = _rpo(refresh="suffix"), RandomEngine(), np.random.default_rng(0)
    visit(rpo, [0, 1, 2], engine, rng, 1)  # the lazy fill: whole groups
    first = [rpo.cache.get(i)[0] for i in range(3)]
    for step in range(2, 30):
        row = visit(rpo, [0, 1, 2], engine, rng, step)[2]
    assert [rpo.cache.get(i)[0] for i in range(3)] == first  # never cut, never resampled
    assert [rpo.cache.births(i)[0] for i in range(3)] == [1, 1, 1]
    assert row["rpo_oldest_age_max"] == 28 and row["rpo_oldest_age_mean"] == 28.0
    assert row["rpo_stale_share"] == 0.0 and row.get("rpo_refreshed_whole", 0) == 0


def test_whole_groups_every_k_visits_bound_the_age_of_every_token():
    rpo, engine, rng = _rpo(refresh="whole", whole_every=3), RandomEngine(), np.random.default_rng(1)
    kinds = []
    for step in range(1, 11):
        plan, _, row = visit(rpo, [0], engine, rng, step)
        kinds.append("partial" if plan.cached[0] else "whole")
        assert step - rpo.cache.births(0).min() < 3  # every token at most K - 1 = 2 visits old
    assert kinds == ["whole", "partial", "partial"] * 3 + ["whole"]  # visits 1, 4, 7, 10: whole groups


# --- whole-path samples inside a group ----------------------------------------------------------------------


def test_whole_path_samples_are_extra_requests_that_come_back_in_their_group():
    cache = ExperienceCache(pool_size=3)
    cache.put(0, [4, 5, 6, 1], step=1)
    plan = partial_requests(cache, [0, 2], lambda i: [9 + i], 1, "half_min", np.random.default_rng(0), step=2,
                            max_new_tokens=6)
    plan.whole = np.array([1, 0])  # prompt 0 continues its path with one whole sample; prompt 2 is uncached
    requests = plan.with_counts([4, 3])
    assert [(r.prompt_ids, r.n, len(r.prefix_ids) > 0, r.max_new_tokens) for r in requests] == \
        [((9,), 3, True, plan.budgets[0]), ((11,), 3, False, None), ((9,), 1, False, None)]
    samples, dropped = plan.finish(RandomEngine(limit=6).generate(requests))
    assert [len(g) for g in samples] == [4, 3] and dropped == [0, 0]
    assert [bool(s.prefix_ids) for s in samples[0]] == [True, True, True, False]  # the whole one last
    with pytest.raises(ValueError, match="2 sample lists for 2 groups and 1 whole-path requests"):
        plan.finish(RandomEngine().generate(requests)[:2])


def test_a_group_draws_its_whole_samples_once_in_its_first_pass():
    plan = PartialPlan([GenRequest((9,), 1, (4,), 5), GenRequest((8,), 1, (3,), 5)], np.array([1, 1]),
                       np.array([5, 5]), np.array([True, True]), np.array([0, 0]), whole=np.array([1, 1]))
    pre = plan.take([1])  # GVM / SPEED pre-samples of the second prompt
    assert pre.whole.tolist() == [1] and plan.whole.tolist() == [1, 0]
    assert [r.n for r in pre.with_counts(2)] == [1, 1]
    assert [(r.prompt_ids, r.n) for r in plan.with_counts([3, 2])] == [((9,), 2), ((8,), 2), ((9,), 1)]
    assert [r.n for r in plan.with_counts([0, 2])] == [0, 2]  # no sample, no whole sample


def test_the_whole_refresh_stores_a_whole_sample_and_keeps_prefix_births_otherwise():
    cache = ExperienceCache(pool_size=2)
    cache.put(0, [4, 5, 6, 1], step=1)
    cache.put(1, [7, 8, 1], step=1)
    g0 = SimpleNamespace(index=0, rewards=np.array([1.0, 0.0]),
                         samples=[Sample(0, (9,), (4, 5), [6, 1], True), Sample(1, (9,), (), [3, 1], True)])
    g1 = SimpleNamespace(index=1, rewards=np.array([1.0]), samples=[Sample(0, (9,), (7,), [2, 1], True)])
    ids, whole = refresh_paths(cache, [g0, g1], np.random.default_rng(0), step=5, epsilon=1.0, rule="whole")
    assert ids.tolist() == [0, 1] and whole.tolist() == [True, False]
    assert cache.get(0).tolist() == [3, 1] and cache.births(0).tolist() == [5, 5]  # the whole one, not the best
    assert cache.get(1).tolist() == [7, 2, 1] and cache.births(1).tolist() == [1, 5, 5]  # no whole one: suffix rule
    assert cache.staleness(step=7, older_than=3) == {"oldest_mean": 4.0, "oldest_max": 6, "stale_share": 0.2}


# --- prefix hints -------------------------------------------------------------------------------------------


def test_hint_lengths_hand_computed():
    # f = 1 - log 0.5 / log p: p = 1/4 -> 1/2, p = 1/16 -> 3/4, p = 1/256 -> 7/8; target 0.25 at p = 1/16 -> 1/2
    assert hint_lengths([0.25, 1 / 16, 1 / 256], [8, 8, 8], below=0.3).tolist() == [4, 6, 7]
    assert hint_lengths([1 / 16], [8], below=0.3, target=0.25).tolist() == [4]
    assert hint_lengths([1e-9, 0.05, 0.5], [8, 2, 8], below=1.0).tolist() == [7, 1, 0]  # kept within [1, len - 1]
    assert hint_lengths([0.2], [8], below=0.1).tolist() == [0]  # above the threshold: no hint


class Predictor:
    """A stand-in for the run's predictor: fixed means."""

    def __init__(self, means):
        self.means = np.asarray(means, dtype=np.float64)

    def mean(self, ids):
        return self.means[np.asarray(ids)]

    def beta(self, ids):
        return self.means[np.asarray(ids)] * 10, (1 - self.means[np.asarray(ids)]) * 10


def test_a_hinted_group_continues_a_correct_path_and_keeps_the_hint_out_of_the_loss():
    hints = PrefixHints(pool_size=3, below=0.1)
    hints.correct.put(1, [4, 5, 6, 7, 8, 9, 2, 3, 1], step=2)  # 9 tokens; p = 1/16: hint round(0.75 x 9) = 7
    rpo = _rpo(refresh="whole", whole_samples=1, hints=hints, predictor=Predictor([0.01, 1 / 16, 0.5]))
    rpo.cache.put(1, [7, 7, 7, 1], step=1)  # a cached path it does not continue while hinted
    plan = rpo.plan(np.array([0, 1, 2]), lambda i: [100 + i], np.random.default_rng(0), step=3)
    assert plan.hinted.tolist() == [False, True, False] and plan.cached.tolist() == [False, True, False]
    assert plan.requests[1].prefix_ids == (4, 5, 6, 7, 8, 9, 2) and plan.budgets[1] == 12 - 7
    assert plan.whole.tolist() == [0, 0, 0] and plan.ages.tolist() == [-1, 1, -1]
    samples, _ = plan.finish(RandomEngine().generate(plan.with_counts(2)))
    assert [s.masked_prefix for s in samples[1]] == [7, 7] and [s.masked_prefix for s in samples[0]] == [0, 0]
    batch = build_batch(samples[1], np.zeros(2), pad_id=0)
    first = len(samples[1][0].prompt_ids) + 7 - 1  # the position that predicts the first generated token
    assert batch.loss_mask[:, :first].sum() == 0 and (batch.loss_mask[:, first] == 1).all()


def test_hinted_groups_refresh_no_cached_path_and_correct_answers_become_hints():
    hints = PrefixHints(pool_size=3, below=0.1)
    hints.correct.put(1, [4, 5, 6, 7, 8, 9, 2, 3, 1], step=2)
    rpo = _rpo(refresh="whole", whole_samples=1, hints=hints, predictor=Predictor([0.01, 1 / 16, 0.5]))
    rpo.cache.put(1, [7, 7, 7, 1], step=1)
    right = lambda group: [1.0] * len(group)  # noqa: E731
    _, samples, row = visit(rpo, [0, 1, 2], RandomEngine(), np.random.default_rng(0), step=3, acc=right)
    assert rpo.cache.get(1).tolist() == [7, 7, 7, 1]  # the hinted prompt's cached path is left alone
    assert rpo.cache.has([0, 2]).tolist() == [True, True] and row["rpo_refreshed"] == 2
    assert row["rpo_hint_groups"] == 1 and row["rpo_hint_tokens"] == 4 * 7 and row["rpo_hint_acc"] == 1.0
    assert row["rpo_hint_shift"] == -0.0625 == rpo.hints.shift  # all right: shorter hints (0.5 x 1/4 x -0.5)
    # the hinted prompt's new correct path: the hint (old births) + the new suffix (born now)
    path = list(samples[1][0].prefix_ids) + samples[1][0].completion_ids
    assert rpo.hints.correct.get(1).tolist() == path
    assert rpo.hints.correct.births(1).tolist() == [2] * 7 + [3] * (len(path) - 7)
    assert row["rpo_hint_paths"] == 3  # every group had a correct answer


def test_without_a_predictor_hints_read_a_whole_path_beta_that_ignores_prefixed_samples():
    hints = PrefixHints(pool_size=2, below=0.1, decay=1.0)
    rpo = _rpo(pool_size=2, refresh="whole", whole_samples=1, hints=hints)
    whole = Sample(0, (9,), (), [3, 1], True)
    suffix = Sample(0, (9,), (4, 5), [3, 1], True)
    hinted = Sample(0, (9,), (4, 5), [3, 1], True, masked_prefix=2)
    groups = [SimpleNamespace(index=0, samples=[suffix, suffix, whole], acc=np.array([1.0, 1.0, 0.0]),
                              rewards=np.zeros(3)),
              SimpleNamespace(index=1, samples=[hinted, hinted], acc=np.array([1.0, 1.0]), rewards=np.zeros(2))]
    rpo.finish_step(groups, np.random.default_rng(0), step=1)
    assert hints.whole.mean(np.array([0, 1])).tolist() == [1 / 3, 0.5]  # Beta(1, 2): the whole sample alone
    rpo.attach_predictor(Predictor([0.05, 0.05]))  # the run's shared predictor, where it has one, is read instead
    assert rpo.plan(np.array([0]), lambda i: [9], np.random.default_rng(0), step=2).hinted.tolist() == [True]


def test_the_component_state_round_trip_plans_and_refreshes_the_same():
    def build():
        hints = PrefixHints(pool_size=6, below=0.3)
        return _rpo(pool_size=6, refresh="whole", whole_samples=1, whole_every=3, hints=hints,
                    predictor=Predictor([0.05, 0.2, 0.6, 0.05, 0.9, 0.1]))

    acc = lambda group: [float(len(s.completion_ids) % 2) for s in group]  # noqa: E731
    a, engine, rng = build(), RandomEngine(3), np.random.default_rng(5)
    for step in range(1, 5):
        visit(a, [0, 1, 2, 3, 4, 5], engine, rng, step, acc=acc)
    b = build()
    b.load_state_dict(a.state_dict())
    twin_engine, twin_rng = RandomEngine(), np.random.default_rng()
    twin_engine.rng.bit_generator.state = engine.rng.bit_generator.state
    twin_rng.bit_generator.state = rng.bit_generator.state
    for step in range(5, 8):
        pa, _, ra = visit(a, [0, 1, 2, 3, 4, 5], engine, rng, step, acc=acc)
        pb, _, rb = visit(b, [0, 1, 2, 3, 4, 5], twin_engine, twin_rng, step, acc=acc)
        assert pa.requests == pb.requests and ra == rb
    assert pa.hinted.any() and not pa.hinted.all()  # both kinds of group took part
    sa, sb = a.state_dict(), b.state_dict()
    assert all(np.array_equal(sa["cache"][k], sb["cache"][k]) for k in ("tokens", "births", "length"))
    assert np.array_equal(sa["since_whole"], sb["since_whole"])


def test_cut_whole_reaches_every_token_but_the_first():
    cuts = np.stack([cut_lengths([6, 2], "whole", np.random.default_rng(s)) for s in range(400)])
    assert sorted(set(cuts[:, 0].tolist())) == [1, 2, 3, 4, 5] and set(cuts[:, 1].tolist()) == {1}


torch.set_num_threads(1)
