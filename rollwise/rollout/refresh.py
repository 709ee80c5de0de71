"""What replaces a cached path after a step: the published suffix refresh, or a whole path that tracks the policy.

    suffix (published): one of the group's answers, prefix + suffix (best reward with probability epsilon)
    whole:              one of the group's whole-path samples (from the prompt alone), when it has any;
                        else as `suffix`

Under the suffix refresh a cut removes at most part of the path, so the tokens before the shortest
cut are never sampled again: with `half_min` the first half of every path is the one written at its
first fill, however long the run (and a shared prefix gets no group-relative gradient either). The
whole refresh stores a path the current policy wrote from the prompt alone whenever the group holds
one; with `rpo_whole_samples` >= 1 every visit stores one (every token of the path is rewritten at
every visit), and with `rpo_whole_every` = K every K-th visit is a whole group. Every token of a
cached path then changes within a bounded number of visits.

Each token's birth step goes with it into the cache: an old prefix keeps its births, new tokens are
born at the step, so the cache can report how old its oldest tokens are (`ExperienceCache.staleness`).
The draws are `choose_refresh`'s (one uniform, one integer per refreshed group, from the run's stream).
"""

from __future__ import annotations

import numpy as np

from rollwise.rollout.cache import ExperienceCache
from rollwise.rollout.partial import answer_ids, choose_refresh

REFRESH_RULES = ("whole", "suffix")


def refresh_candidates(samples, rule: str) -> np.ndarray:
    """Positions of the samples a group's refresh chooses among: its whole paths under `whole` (when it has
    any), else all of them.

    >>> from types import SimpleNamespace as S
    >>> group = [S(prefix_ids=(4, 5)), S(prefix_ids=()), S(prefix_ids=(4, 5))]
    >>> refresh_candidates(group, "whole").tolist(), refresh_candidates(group, "suffix").tolist()
    ([1], [0, 1, 2])
    """
    if rule not in REFRESH_RULES:
        raise ValueError(f"rpo_refresh={rule!r}: expected one of {', '.join(REFRESH_RULES)}")
    everything = np.arange(len(samples))
    if rule == "suffix":
        return everything
    whole = np.array([i for i, s in enumerate(samples) if not s.prefix_ids], dtype=np.int64)
    return whole if whole.size else everything


def prefix_births(cache: ExperienceCache, index: int, prefix_length: int, step: int) -> np.ndarray:
    """Birth steps of the first `prefix_length` tokens of prompt `index`'s cached path (the prefix a group
    continued). Where the path is gone (never the case within a step), the tokens count as born now."""
    if prefix_length == 0:
        return np.zeros(0, dtype=np.int64)
    if not cache.has([index])[0] or cache.lengths([index])[0] < prefix_length:
        return np.full(prefix_length, step, dtype=np.int64)
    return cache.births(index)[:prefix_length]


def refresh_paths(cache: ExperienceCache, groups, rng: np.random.Generator, step: int, epsilon: float,
                  rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Store one new path per non-empty group by `rule`; returns the refreshed ids and whether each stored
    a whole path (an empty prefix: every token new).

    `groups` are rollout groups (index, samples, rewards: the final, shaped rewards). Births are read
    before anything is written, so a prefix keeps the births of the path it was cut from.
    """
    ids, paths, births, whole = [], [], [], []
    for g in groups:
        if len(g.samples) == 0:
            continue
        candidates = refresh_candidates(g.samples, rule)
        chosen = g.samples[int(candidates[choose_refresh(np.asarray(g.rewards)[candidates], rng, epsilon)])]
        prefix = len(chosen.prefix_ids)
        ids.append(g.index)
        paths.append(answer_ids(chosen))
        births.append(np.concatenate([prefix_births(cache, g.index, prefix, step),
                                      np.full(len(chosen.completion_ids), step, dtype=np.int64)]))
        whole.append(prefix == 0)
    ids_array = np.asarray(ids, dtype=np.int64)
    cache.put_many(ids_array, paths, step, births)
    return ids_array, np.asarray(whole, dtype=bool)
