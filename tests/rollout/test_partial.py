"""RPO partial rollouts: cut bounds, suffix budgets, prefix + suffix assembly at the token level, the
length-aware reward and the overlong penalty (hand-computed), the refresh rule, plans and metrics."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rollwise.policy import tiny
from rollwise.data.pool import PoolItem
from rollwise.rollout.cache import ExperienceCache
from rollwise.rollout.collect import verify_samples
from rollwise.rollout.engine import GenRequest, HFEngine, Sample, SamplingParams
from rollwise.rollout.partial import (answer_ids, answer_lengths, check_suffix_budget, choose_refresh, clip_to_budget,
                                      cut_lengths, length_aware_rewards, overlong_penalty, partial_requests,
                                      refresh_cache, rpo_metrics, suffix_budget)
from rollwise.policy.scratchpad import ScratchpadCodec, ScratchpadLayout
from rollwise.policy.tiny import EOS

torch.set_num_threads(1)

# --- cut points -------------------------------------------------------------------------------------------


def _upper_bounds(lengths, L, draws=3000):
    rng = np.random.default_rng(0)
    cuts = np.stack([cut_lengths(lengths, L, rng) for _ in range(draws)])
    return cuts.min(axis=0).tolist(), cuts.max(axis=0).tolist(), cuts


def test_cut_bounds_fixed_L():
    # m in [1, min(L, max(1, len - 1))]: len 1 -> 1 (the whole path), 2 -> 1, 3 -> 2, 10 -> 9, 1000 -> L = 300.
    low, high, cuts = _upper_bounds([1, 2, 3, 10, 1000], 300)
    assert low == [1, 1, 1, 1, 1] and high == [1, 1, 2, 9, 300]
    # Uniform on its range: every value of 1..9 for the 10-token path, each near 1/9 of the draws.
    counts = np.bincount(cuts[:, 3], minlength=10)[1:]
    assert (np.abs(counts / len(cuts) - 1 / 9) < 0.03).all()


def test_cut_bounds_half_min():
    # L_g = max(1, len // 2) of the group's own path: 1 -> 1, 2 -> 1, 3 -> 1, 10 -> 5, 1000 -> 500.
    low, high, _ = _upper_bounds([1, 2, 3, 10, 1000], "half_min")
    assert low == [1, 1, 1, 1, 1] and high == [1, 1, 1, 5, 500]


def test_cuts_are_one_draw_per_group_from_the_stream():
    a = cut_lengths([10, 20, 30], 8, np.random.default_rng(7))
    b = np.random.default_rng(7).integers(1, np.array([9, 9, 9]))
    assert a.tolist() == b.tolist()
    assert cut_lengths([], 8, np.random.default_rng(0)).tolist() == []


def test_cut_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least one token"):
        cut_lengths([0, 3], 5, rng)
    for bad in (0, -1, "half", 2.5, True):
        with pytest.raises(ValueError, match="positive integer, 'half_min' or 'whole'"):
            cut_lengths([3], bad, rng)


# --- suffix budgets ---------------------------------------------------------------------------------------


def test_suffix_budget_settings_hand_computed():
    m, prefix, T = [1, 4, 6], [10, 12, 4], 20
    assert suffix_budget(m, prefix, T, "limit").tolist() == [10, 8, 16]  # T - prefix, each >= m
    assert suffix_budget(m, prefix, T, "exact").tolist() == [1, 4, 6]
    assert suffix_budget(m, prefix, T, "2m").tolist() == [2, 8, 12]
    assert suffix_budget(m, prefix, T, "1.5m").tolist() == [2, 6, 9]  # ceil(1.5), 6, 9
    assert suffix_budget(m, prefix, T, "3m").tolist() == [3, 8, 16]  # capped by the limit: prefix + suffix <= T
    assert suffix_budget([10], [1], 12, "1.1m").tolist() == [11]  # 1.1 x 10 is 11, not 12 (float rounding)


def test_suffix_budget_refuses_a_path_beyond_the_limit_and_unknown_settings():
    with pytest.raises(ValueError, match="longer than max_new_tokens=10"):
        suffix_budget([3], [8], 10)  # the cached path had 11 tokens
    for bad in ("m/2", "0.5m", "all", "", 3):
        with pytest.raises(ValueError, match="'limit'"):
            check_suffix_budget(bad)
    assert check_suffix_budget("1m") == "1m"


def test_clip_to_budget():
    s = Sample(0, (5,), (6, 7), [8, 9, 10, EOS], finished=True)
    assert clip_to_budget(s, 4) is s
    cut = clip_to_budget(s, 3)
    assert cut.completion_ids == [8, 9, 10] and not cut.finished and cut.prefix_ids == (6, 7)
    assert s.completion_ids == [8, 9, 10, EOS]  # the original is untouched


def test_generating_long_and_clipping_equals_generating_short():
    """Sampling is token by token, so cutting a 10-token sample at 4 is the 4-token sample (same seed)."""
    model = tiny.build_tiny_model(2, 32, 2, seed=3)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(3)
    engine = HFEngine(model, eos_token_id=EOS, pad_token_id=tiny.PAD)
    requests = [GenRequest((2, 3, 4, 12), 6, prefix_ids=(5, 6)), GenRequest((7, 8, 12, 9), 5)]
    outs = []
    for budget in (10, 4):
        torch.manual_seed(0)
        outs.append(engine.generate(requests, SamplingParams(max_new_tokens=budget)))
    long, short = outs
    assert any(len(s.completion_ids) > 4 for g in long for s in g)  # the clip has something to do
    clipped = [[clip_to_budget(s, 4) for s in g] for g in long]
    assert [[(s.completion_ids, s.finished) for s in g] for g in clipped] == \
        [[(s.completion_ids, s.finished) for s in g] for g in short]


# --- prefix + suffix at the token level ---------------------------------------------------------------------

CODEC = ScratchpadCodec(ScratchpadLayout(slots=3, width=3))
ITEM = PoolItem(0, "47 + 45 + 98 =", "190", {"expression": "47+45+98"})
PATH = CODEC.supervised_target(ITEM)  # '740,290,091' + EOS: 12 tokens, the layout's whole max_new_tokens


class ExactVerifier:
    """Scores an extracted answer against the item's reference answer."""

    def score_batch(self, answers, items):
        return [SimpleNamespace(acc=float(a == it.answer), reward=float(a == it.answer)) for a, it in
                zip(answers, items)]


class FixedCut:
    """A stand-in generator whose integers() returns a chosen cut (partial_requests draws cuts this way)."""

    def __init__(self, m):
        self.m = m

    def integers(self, low, high):
        assert (np.asarray(high) > self.m).all()
        return np.full(np.shape(high), self.m)


def _plan(m, path=PATH):
    cache = ExperienceCache(pool_size=1)
    cache.put(0, path, step=1)
    return partial_requests(cache, [0], lambda i: CODEC.prompt_ids(ITEM), 2, 100, FixedCut(m), step=3,
                            max_new_tokens=CODEC.max_new_tokens, eos_token_id=EOS)


def test_cut_of_one_removes_exactly_the_eos():
    assert CODEC.decode(PATH) == "740,290,091" and PATH[-1] == EOS and len(PATH) == 12
    plan = _plan(1)
    request = plan.requests[0]
    assert request.prompt_ids == tuple(CODEC.prompt_ids(ITEM)) and request.n == 2
    assert request.prefix_ids == tuple(PATH[:-1]) and EOS not in request.prefix_ids
    assert plan.budgets.tolist() == [1] and plan.cuts.tolist() == [1]  # 12 - 11 tokens of prefix


def test_a_cut_inside_the_final_answer_is_scored_as_one_whole_answer():
    plan = _plan(3)  # drop '9', '1' and EOS: the prefix ends inside the last field '091'
    prefix = plan.requests[0].prefix_ids
    assert CODEC.decode(list(prefix)) == "740,290,0" and plan.budgets.tolist() == [3]
    right = Sample(0, plan.requests[0].prompt_ids, prefix, PATH[-3:], finished=True)  # '91' + EOS
    wrong = Sample(0, plan.requests[0].prompt_ids, prefix, PATH[-3:-2] + [4, EOS], finished=True)  # '92' + EOS
    assert answer_ids(right) == PATH and answer_lengths([right, wrong]).tolist() == [12, 12]
    scores = verify_samples(CODEC, ExactVerifier(), [ITEM], [[right, wrong]])[0]
    assert [s.acc for s in scores] == [1.0, 0.0]  # 190 from '091', 290 from '092'


def test_an_unfinished_path_loses_real_tokens():
    unfinished = PATH[:-1]  # hit the limit without EOS
    plan = _plan(2, path=unfinished)
    assert CODEC.decode(list(plan.requests[0].prefix_ids)) == "740,290,0"
    assert plan.budgets.tolist() == [3]  # 12 - 9: one more token than was cut


def test_a_path_with_an_inner_eos_is_refused():
    with pytest.raises(ValueError, match="EOS before its last token"):
        _plan(1, path=PATH[:4] + [EOS] + PATH[4:-2])


# --- plans --------------------------------------------------------------------------------------------------


def test_plan_mixes_partial_and_full_groups():
    cache = ExperienceCache(pool_size=5)
    cache.put(1, [10, 11, 12, 13, 14, 1], step=2)
    cache.put(3, [20, 21, 22, 23], step=4)
    prompts = {i: [100 + i] for i in range(5)}
    plan = partial_requests(cache, [3, 0, 1], prompts.__getitem__, [4, 8, 2], "half_min", np.random.default_rng(11),
                            step=6, max_new_tokens=9)
    expected = cut_lengths([4, 6], "half_min", np.random.default_rng(11))  # cached groups only, in order
    assert plan.cuts.tolist() == [expected[0], 0, expected[1]]
    assert plan.cached.tolist() == [True, False, True] and plan.ages.tolist() == [2, -1, 4]
    m3, m1 = expected
    assert [r.prefix_ids for r in plan.requests] == [(20, 21, 22, 23)[: 4 - m3], (), (10, 11, 12, 13, 14, 1)[: 6 - m1]]
    assert [r.prompt_ids for r in plan.requests] == [(103,), (100,), (101,)]
    assert [r.n for r in plan.requests] == [4, 8, 2]
    assert plan.budgets.tolist() == [9 - (4 - m3), 9, 9 - (6 - m1)]


def test_plan_clip_counts_the_tokens_cut_off():
    cache = ExperienceCache(pool_size=1)
    cache.put(0, [3, 4, 5, 6, 1], step=0)
    plan = partial_requests(cache, [0], lambda i: [9], 2, 3, FixedCut(2), step=0, max_new_tokens=5, budget="exact")
    samples = [[Sample(0, (9,), (3, 4, 5), [6, 7, 8, 1], True), Sample(0, (9,), (3, 4, 5), [6, 1], True)]]
    clipped, dropped = plan.clip(samples)
    assert [s.completion_ids for s in clipped[0]] == [[6, 7], [6, 1]] and dropped == 2
    assert [s.finished for s in clipped[0]] == [False, True]


def test_plan_is_the_same_after_a_cache_and_stream_round_trip():
    """Resume exactness: the restored cache and generator make the same plan as the uninterrupted ones."""
    rng = np.random.default_rng(3)
    cache = ExperienceCache(pool_size=6, max_tokens_total=20)
    for i in range(6):
        cache.put(i, rng.integers(2, 9, size=int(rng.integers(1, 7))), step=i)
    restored = ExperienceCache(pool_size=6)
    restored.load_state_dict(cache.state_dict())
    twin = np.random.default_rng()
    twin.bit_generator.state = rng.bit_generator.state
    plans = [partial_requests(c, np.arange(6), lambda i: [i], 3, 4, g, step=9, max_new_tokens=8)
             for c, g in ((cache, rng), (restored, twin))]
    assert plans[0].requests == plans[1].requests and plans[0].cuts.tolist() == plans[1].cuts.tolist()
    assert cache.state_dict()["last_used"].tolist() == restored.state_dict()["last_used"].tolist()


# --- rewards ------------------------------------------------------------------------------------------------


def test_length_aware_reward_hand_computed():
    # Group 7: lengths 100, 200, 300 (correct) and 400 (wrong); l_ref = mean of all four = 250.
    #   sigmoid(0.01 x 150) = 0.817574, sigmoid(0.5) = 0.622459, sigmoid(-0.5) = 0.377541 -> clipped to 0.5.
    # Group 2 (interleaved): all wrong, unchanged. Group 5: one correct with score 0.9 at length 60, another
    # sample at 20: l_ref = 40, 0.9 x sigmoid(-0.2) = 0.9 x 0.450166 = 0.405 -> 0.5.
    rewards = [1, 0, 1, 1, 0, 0.9, 0, 0.3]
    acc = [1, 0, 1, 1, 0, 1, 0, 0]
    lengths = [100, 50, 200, 300, 400, 60, 70, 20]
    groups = [7, 2, 7, 7, 7, 5, 2, 5]
    out = length_aware_rewards(rewards, acc, lengths, groups)
    assert out == pytest.approx([0.817574, 0, 0.622459, 0.5, 0, 0.5, 0, 0.3], abs=1e-6)


def test_length_aware_reward_reference_correct_and_alpha():
    # l_ref over the correct samples of the group: (100 + 200 + 300) / 3 = 200.
    #   sigmoid(1) = 0.731059, sigmoid(0) = 0.5, sigmoid(-1) = 0.268941 -> 0.5.
    out = length_aware_rewards([1, 1, 1, 0], [1, 1, 1, 0], [100, 200, 300, 400], [0, 0, 0, 0], reference="correct")
    assert out == pytest.approx([0.731059, 0.5, 0.5, 0.0], abs=1e-6)
    # alpha = 0.1, l_ref = 250: 100 tokens short -> sigmoid(10) = 0.9999546; 100 long -> sigmoid(-10) -> 0.5.
    out = length_aware_rewards([1, 1, 0, 0], [1, 1, 0, 0], [150, 350, 250, 250], [0, 0, 0, 0], alpha=0.1)
    assert out == pytest.approx([0.9999546, 0.5, 0, 0], abs=1e-7)


def test_length_aware_reward_restores_spread_in_an_all_correct_group():
    out = length_aware_rewards([1, 1, 1, 1], [1, 1, 1, 1], [80, 90, 100, 130], [0, 0, 0, 0])
    assert out.std() > 0 and out[0] > out[1] > out[2] >= 0.5 and out[3] == 0.5


def test_length_aware_reward_input_checks():
    with pytest.raises(ValueError, match="one entry per sample"):
        length_aware_rewards([1, 1], [1, 1], [3], [0, 0])
    with pytest.raises(ValueError, match="'all' or 'correct'"):
        length_aware_rewards([1], [1], [3], [0], reference="mean")


def test_overlong_penalty_hand_computed():
    # DAPO with L_max = 20, L_cache = 4: 0 up to 16, then (16 - len) / 4, -1 beyond 20.
    out = overlong_penalty([5, 16, 17, 18, 19, 20, 21], max_len=20, cache_len=4)
    assert out.tolist() == [0.0, 0.0, -0.25, -0.5, -0.75, -1.0, -1.0]
    assert overlong_penalty([5, 30], max_len=20, cache_len=0).tolist() == [0.0, 0.0]  # off
    with pytest.raises(ValueError, match="cache_len=21"):
        overlong_penalty([5], max_len=20, cache_len=21)


# --- refresh ------------------------------------------------------------------------------------------------


def test_choose_refresh_replays_its_draws():
    """One uniform, then one integer: best (ties at random) when the uniform is below epsilon."""
    rewards = np.array([1.0, 0.0, 1.0, 0.5])
    for seed in range(20):
        replay = np.random.default_rng(seed)
        greedy = replay.random() < 0.5
        pool = np.array([0, 2]) if greedy else np.arange(4)
        assert choose_refresh(rewards, np.random.default_rng(seed)) == pool[replay.integers(pool.size)]


def test_choose_refresh_frequencies():
    rng = np.random.default_rng(0)
    rewards = [1.0, 0.0, 1.0, 0.5]
    picks = np.array([choose_refresh(rewards, rng, epsilon=1.0) for _ in range(2000)])
    assert set(picks) == {0, 2} and abs((picks == 0).mean() - 0.5) < 0.05  # ties split evenly
    picks = np.array([choose_refresh(rewards, rng, epsilon=0.0) for _ in range(4000)])
    assert (np.abs(np.bincount(picks, minlength=4) / 4000 - 0.25) < 0.03).all()
    picks = np.array([choose_refresh(rewards, rng, epsilon=0.5) for _ in range(4000)])
    # P(a best one) = 0.5 + 0.5 x 2/4 = 0.75
    assert abs(np.isin(picks, [0, 2]).mean() - 0.75) < 0.03
    with pytest.raises(ValueError, match="no samples"):
        choose_refresh([], rng)
    with pytest.raises(ValueError, match="epsilon=1.5"):
        choose_refresh([1.0], rng, epsilon=1.5)


def test_refresh_cache_stores_the_whole_answer_of_the_best_sample():
    cache = ExperienceCache(pool_size=4)
    cache.put(2, [9, 9, 9, 9], step=1)
    g2 = SimpleNamespace(index=2, rewards=np.array([0.0, 0.8]),
                         samples=[Sample(0, (5,), (9, 9), [3, 1], True), Sample(0, (5,), (9, 9), [4, 4, 1], True)])
    g0 = SimpleNamespace(index=0, rewards=np.array([1.0]), samples=[Sample(1, (6,), (), [7, 1], True)])
    empty = SimpleNamespace(index=3, rewards=np.zeros(0), samples=[])
    assert refresh_cache(cache, [g2, g0, empty], np.random.default_rng(0), step=5, epsilon=1.0) == 2
    assert cache.get(2).tolist() == [9, 9, 4, 4, 1]  # prefix + the best suffix
    assert cache.get(0).tolist() == [7, 1]  # a first visit (full rollout) fills the cache
    assert cache.has([3]).tolist() == [False] and cache.age([0, 2], step=5).tolist() == [0, 0]


# --- metrics ------------------------------------------------------------------------------------------------


def test_rpo_metrics_hand_computed():
    cache = ExperienceCache(pool_size=3)
    cache.put(0, [4, 5, 6, 1], step=1)
    plan = partial_requests(cache, [0, 2], lambda i: [9], [2, 1], 8, FixedCut(2), step=4, max_new_tokens=6)
    samples = [[Sample(0, (9,), (4, 5), [6, 1], True), Sample(0, (9,), (4, 5), [7, 7, 7, 1], True)],
               [Sample(1, (9,), (), [3, 3, 1], True)]]
    row = rpo_metrics(plan, samples, cache)
    assert row["rpo_partial_groups"] == 1 and row["rpo_full_groups"] == 1
    assert row["rpo_cut_mean"] == 2 and row["rpo_cache_age_mean"] == 3
    assert row["rpo_prefix_tokens"] == 4 and row["rpo_suffix_tokens"] == 6 and row["rpo_suffix_mean"] == 3
    assert row["rpo_cache_paths"] == 1 and row["rpo_cache_tokens"] == 4 and row["rpo_cache_evictions"] == 0
    assert row["rpo_cache_bytes"] == cache.memory_bytes() > 0


def test_shared_prefix_tokens_get_no_grpo_gradient():
    """Why RPO trains only what it cuts (docs/rpo.md): a group's rows share their prefix, so on-policy (ratio 1,
    one update per batch, no KL) each prefix token's gradient is its grad log-prob times the sum of the group's
    advantages, which GRPO makes 0. Training on prefix + suffix tokens moves the policy exactly as training on
    the suffixes alone does, scaled by the token-mean's larger denominator."""
    from rollwise.algos.grpo import clipped_policy_loss, group_advantages

    model = tiny.build_tiny_model(1, 16, 2, seed=1)
    prompt, prefix = [5, 6, 7], [8, 9, 10, 11]  # ids of the tiny vocabulary (17 tokens)
    suffixes = [[12, 13], [14, 13], [12, 15], [16, 3]]
    ids = torch.tensor([prompt + prefix + s for s in suffixes])
    adv = torch.tensor(group_advantages(np.array([1.0, 0.0, 0.0, 1.0]), np.zeros(4, dtype=int)), dtype=torch.float32)
    start = len(prompt)

    def gradient(first_trained: int) -> torch.Tensor:
        model.zero_grad()
        logits = model(ids).logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)[:, start - 1:]
        mask = torch.zeros_like(logp)
        mask[:, first_trained:] = 1.0
        loss, _ = clipped_policy_loss(logp, logp.detach(), adv, mask)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    both, suffix_only = gradient(0), gradient(len(prefix))
    width = len(prefix) + len(suffixes[0])
    assert suffix_only.abs().max() > 0
    torch.testing.assert_close(both * width, suffix_only * len(suffixes[0]), rtol=1e-4, atol=1e-7)
