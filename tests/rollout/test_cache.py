"""The RPO experience cache: paths in and out, LRU eviction to a token budget, compaction, exact state round trip."""

import time

import numpy as np
import pytest

from rollwise.store import safestate
from rollwise.rollout.cache import ExperienceCache


def test_put_get_has_lengths_age():
    cache = ExperienceCache(pool_size=5)
    assert len(cache) == 0 and cache.has([0, 4]).tolist() == [False, False]
    cache.put(2, [7, 8, 9, 1], step=3)
    cache.put(4, np.array([5], dtype=np.int64), step=6)
    assert cache.get(2).tolist() == [7, 8, 9, 1] and cache.get(2).dtype == np.int32
    assert cache.get(4).tolist() == [5]
    assert cache.has([0, 2, 4]).tolist() == [False, True, True]
    assert cache.lengths([0, 2, 4]).tolist() == [-1, 4, 1]
    assert cache.age([0, 2, 4], step=10).tolist() == [-1, 7, 4]
    assert len(cache) == 2 and cache.live_tokens == 5


def test_replacing_a_path_keeps_the_others_and_the_newest_step():
    cache = ExperienceCache(pool_size=3)
    cache.put_many([0, 1], [[1, 2, 3], [4, 5]], step=1)
    cache.put(0, [9, 9], step=4)
    assert cache.get(0).tolist() == [9, 9] and cache.get(1).tolist() == [4, 5]
    assert cache.age([0, 1], step=4).tolist() == [0, 3]
    assert cache.live_tokens == 4


def test_get_returns_a_copy():
    cache = ExperienceCache(pool_size=1)
    cache.put(0, [1, 2, 3], step=0)
    path = cache.get(0)
    path[0] = 99
    assert cache.get(0).tolist() == [1, 2, 3]


def test_errors_say_what_was_wrong():
    cache = ExperienceCache(pool_size=3, max_tokens_total=5)
    with pytest.raises(KeyError, match="prompt 1 has no cached path"):
        cache.get(1)
    with pytest.raises(ValueError, match="non-empty"):
        cache.put(0, [], step=0)
    with pytest.raises(ValueError, match="token ids"):
        cache.put(0, [1, -2], step=0)
    with pytest.raises(ValueError, match="token ids"):
        cache.put(0, [1.5, 2.0], step=0)
    with pytest.raises(ValueError, match="6 tokens, more than the whole cache budget"):
        cache.put(0, [1] * 6, step=0)
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        cache.has([3])
    with pytest.raises(ValueError, match="2 ids but 1 paths"):
        cache.put_many([0, 1], [[1]], step=0)
    with pytest.raises(ValueError, match="max_tokens_total"):
        ExperienceCache(pool_size=3, max_tokens_total=0)


def test_lru_eviction_hand_computed():
    # Budget 10. a=0 (4 tokens), b=1 (4), then a is read, so b is least recently used; c=2 (4) makes 12 > 10:
    # b goes (12 - 4 = 8 fits). Then d=3 (5) makes 13: a was used before c, so a goes (13 - 4 = 9 fits).
    cache = ExperienceCache(pool_size=4, max_tokens_total=10)
    cache.put(0, [1, 1, 1, 1], step=0)
    cache.put(1, [2, 2, 2, 2], step=0)
    cache.get(0)
    cache.put(2, [3, 3, 3, 3], step=1)
    assert cache.has([0, 1, 2]).tolist() == [True, False, True] and cache.evictions == 1
    cache.put(3, [4] * 5, step=2)
    assert cache.has([0, 1, 2, 3]).tolist() == [False, False, True, True] and cache.evictions == 2
    assert cache.live_tokens == 9 <= 10
    assert cache.get(2).tolist() == [3, 3, 3, 3] and cache.get(3).tolist() == [4] * 5


def test_put_many_evicts_several_oldest_at_once():
    # Budget 6, three 2-token paths, then two 3-token paths in one call: 12 tokens, 6 must go: the three
    # older paths (2 + 2 + 2), oldest first, and nothing of the new ones.
    cache = ExperienceCache(pool_size=5, max_tokens_total=6)
    cache.put_many([0, 1, 2], [[1, 1], [2, 2], [3, 3]], step=0)
    cache.put_many([3, 4], [[4, 4, 4], [5, 5, 5]], step=1)
    assert cache.has(range(5)).tolist() == [False, False, False, True, True]
    assert cache.evictions == 3 and cache.live_tokens == 6


def test_replacements_compact_the_buffer_and_keep_every_path():
    rng = np.random.default_rng(0)
    cache = ExperienceCache(pool_size=50)
    truth = {}
    for step in range(2000):
        i = int(rng.integers(50))
        path = rng.integers(0, 1000, size=int(rng.integers(1, 40)))
        cache.put(i, path, step)
        truth[i] = path.tolist()
    assert all(cache.get(i).tolist() == p for i, p in truth.items())
    assert cache.live_tokens == sum(map(len, truth.values()))
    # Garbage is compacted away: the buffer stays within a small multiple of the live tokens.
    assert cache.buffer.size <= 2 * cache.live_tokens + 1024


def _filled(pool=8, budget=30, seed=1):
    rng = np.random.default_rng(seed)
    cache = ExperienceCache(pool_size=pool, max_tokens_total=budget)
    for step in range(40):
        i = int(rng.integers(pool))
        if rng.random() < 0.3 and cache.has([i])[0]:
            cache.get(i)
        else:
            cache.put(i, rng.integers(0, 50, size=int(rng.integers(1, 9))), step)
    return cache


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k]
                                        for k in a)


def test_state_dict_round_trip_is_exact_and_behaves_the_same_afterwards():
    original = _filled()
    assert original.evictions > 0  # the budget was active, so LRU order matters below
    restored = ExperienceCache(pool_size=8)
    restored.load_state_dict(safestate.decode(safestate.encode(original.state_dict())))  # the checkpoint's format
    assert _same_state(original.state_dict(), restored.state_dict())
    for i in np.flatnonzero(original.has(range(8))):
        assert original.get(int(i)).tolist() == restored.get(int(i)).tolist()
    # The same future operations give the same evictions and paths (LRU clock restored).
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    for cache, rng in ((original, rng_a), (restored, rng_b)):
        for step in range(40, 60):
            cache.put(int(rng.integers(8)), rng.integers(0, 50, size=int(rng.integers(1, 9))), step)
    assert _same_state(original.state_dict(), restored.state_dict())
    assert original.evictions == restored.evictions


def test_state_dict_holds_no_garbage():
    cache = ExperienceCache(pool_size=2)
    for step in range(100):
        cache.put(0, [1] * 10, step)
    cache.put(1, [2, 3], step=100)
    state = cache.state_dict()
    assert state["tokens"].tolist() == [1] * 10 + [2, 3]  # pool order, live paths only
    assert state["length"].tolist() == [10, 2]


def test_load_refuses_another_pool_or_damaged_state():
    state = _filled().state_dict()
    with pytest.raises(ValueError, match="pool of 8 prompts, this pool has 9"):
        ExperienceCache(pool_size=9).load_state_dict(state)
    state["tokens"] = state["tokens"][:-1]
    with pytest.raises(ValueError, match="inconsistent"):
        ExperienceCache(pool_size=8).load_state_dict(state)


def test_large_pool_memory_is_bounded_and_state_dict_is_cheap():
    # 100k prompts with 50-token paths and a 2M-token budget: 5M tokens offered, at most 2M kept.
    pool, budget = 100_000, 2_000_000
    cache = ExperienceCache(pool_size=pool, max_tokens_total=budget)
    rng = np.random.default_rng(0)
    for start in range(0, pool, 1000):
        ids = np.arange(start, start + 1000)
        cache.put_many(ids, list(rng.integers(0, 150_000, size=(1000, 50))), step=start // 1000)
    assert cache.live_tokens <= budget and len(cache) == budget // 50
    assert cache.evictions == pool - budget // 50
    assert cache.has([0, pool - 1]).tolist() == [False, True]  # the oldest went first
    # Per-prompt arrays (4 x 8 bytes x 100k = 3.2 MB) plus buffers of about 2x the live tokens (8 bytes a
    # token: its id and its birth step; a batch of 50k tokens may overshoot the budget before its evictions).
    assert cache.memory_bytes() <= 4 * 8 * pool + 8 * 2 * (budget + 50_000)
    start = time.perf_counter()
    state = cache.state_dict()
    assert time.perf_counter() - start < 2.0
    assert state["tokens"].nbytes == 4 * cache.live_tokens
