"""RPO partial rollouts (docs/methods.md section 4): cut a cached path, sample suffixes, shape, refresh.

    cache path p (EOS last when finished) --cut m ~ U{1..L}--> prefix p[:len-m]
        --engine--> G suffixes from prompt + prefix (budget: setting) --verify prefix + suffix as one answer
        --> length-aware reward (correct answers) + soft overlong penalty --> GRPO
        --> refresh: the best-reward path with probability epsilon, else a random one

Choices (docs/rpo.md says why):
- One cut per group: a group has one cached path, and its G suffixes share one prefix, so that GRPO
  compares completions of the same partial answer. m is drawn in [1, min(L, max(1, len - 1))]: m >= 1
  always removes the EOS of a finished path (a prefix never holds EOS), and at least one token of the
  path stays as prefix when the path has two or more; a one-token path is cut whole (the group is then
  a full rollout). L = "half_min" is half the shortest cached path of the group, which with one path per
  group is max(1, len // 2) of that path.
- Suffix budget: "limit" (default) gives each suffix what the full-path limit leaves,
  max_new_tokens - len(prefix) (at least m, since the cached path itself fit the limit), so a suffix
  may be longer than the part it replaces and prefix + suffix never exceeds max_new_tokens; "exact" is
  m (the public code); "<k>m" (e.g. "2m") is min(limit, ceil(k m)).
- Length is the whole answer: prefix + suffix tokens.
- Groups whose prompt has no cached path yet are ordinary full rollouts (empty prefix, cut 0); the
  refresh after the step fills their cache entry from them (lazy fill, no extra rollouts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from rollwise.rollout.cache import ExperienceCache
from rollwise.rollout.rpo_metrics import rpo_metrics

if TYPE_CHECKING:  # the engine imports torch; the config validates suffix budgets without it
    from rollwise.rollout.engine import GenRequest, Sample

_FACTOR = re.compile(r"^(\d+(?:\.\d+)?)m$")


# ----------------------------------------------------------------------------------------- cutting


def cut_lengths(path_lengths, L: int | str, rng: np.random.Generator) -> np.ndarray:
    """One cut m per group, uniform on {1, ..., min(L_g, max(1, len_g - 1))}, from the group's cached path.

    L_g is L when L is an int, max(1, len_g // 2) for L = "half_min" and len_g for L = "whole" (any cut
    that leaves one token). One rng.integers call for all groups (vectorised), so the draws depend only
    on the path lengths and the stream.

    >>> cut_lengths([1, 2, 3], 100, np.random.default_rng(0)).tolist()   # upper bounds 1, 1, 2
    [1, 1, 2]
    """
    lengths = np.asarray(path_lengths, dtype=np.int64)
    if lengths.size and lengths.min() < 1:
        raise ValueError(f"cut_lengths: cached paths must have at least one token, got lengths {lengths.tolist()}")
    if L == "half_min":
        limit = np.maximum(1, lengths // 2)
    elif L == "whole":
        limit = lengths
    elif isinstance(L, (int, np.integer)) and not isinstance(L, bool) and L >= 1:
        limit = np.full_like(lengths, int(L))
    else:
        raise ValueError(f"cut_lengths: L must be a positive integer, 'half_min' or 'whole', got {L!r}")
    upper = np.minimum(limit, np.maximum(1, lengths - 1))
    if lengths.size == 0:
        return np.zeros(0, dtype=np.int64)
    return rng.integers(1, upper + 1).astype(np.int64)


def parse_cut(setting: str) -> int | str:
    """The cut setting as the planner takes it: "half_min", "whole" or a fixed L (a positive integer).

    >>> parse_cut("half_min"), parse_cut("whole"), parse_cut("8")
    ('half_min', 'whole', 8)
    """
    if setting in ("half_min", "whole"):
        return setting
    if isinstance(setting, str) and setting.isdigit() and int(setting) >= 1:
        return int(setting)
    raise ValueError(f"rpo_cut={setting!r}: expected half_min, whole or a positive integer")


def check_suffix_budget(setting: str) -> str:
    """Validate a suffix-budget setting ("limit", "exact" or "<k>m" with k >= 1); returns it."""
    match = _FACTOR.match(setting) if isinstance(setting, str) else None
    if setting in ("limit", "exact") or (match and float(match.group(1)) >= 1.0):
        return setting
    raise ValueError(f"suffix budget {setting!r}: use 'limit' (max_new_tokens - prefix, the default), 'exact' "
                     "(m tokens, the public code) or '<k>m' with k >= 1 (e.g. '2m': min(limit, ceil(2 m)))")


def suffix_budget(m, prefix_lengths, max_new_tokens: int, setting: str = "limit") -> np.ndarray:
    """Most tokens each suffix may generate; prefix + suffix never exceeds max_new_tokens.

    >>> suffix_budget([3, 3, 3], [5, 5, 5], 20, "limit").tolist(), suffix_budget([3], [5], 20, "2m").tolist()
    ([15, 15, 15], [6])
    """
    m = np.asarray(m, dtype=np.int64)
    prefix = np.asarray(prefix_lengths, dtype=np.int64)
    limit = max_new_tokens - prefix
    if (limit < m).any():
        raise ValueError(f"suffix_budget: a cached path (prefix + cut) is longer than max_new_tokens={max_new_tokens}"
                         "; the cache must be filled and refreshed with the run's own max_new_tokens")
    setting = check_suffix_budget(setting)
    if setting == "limit":
        return limit
    if setting == "exact":
        return m.copy()
    factor = float(_FACTOR.match(setting).group(1))
    # The tolerance keeps float products such as 1.1 * 10 = 11.000000000000002 from rounding up to 12.
    return np.minimum(limit, np.ceil(factor * m - 1e-9).astype(np.int64))


def clip_to_budget(sample: Sample, budget: int) -> Sample:
    """The sample as if generated with max_new_tokens = budget (exact: sampling is token by token).

    Lets an engine without per-request limits generate a batch at its largest budget and cut each row.
    """
    if len(sample.completion_ids) <= budget:
        return sample
    return replace(sample, completion_ids=list(sample.completion_ids[:budget]), finished=False)


def answer_ids(sample: Sample) -> list[int]:
    """The whole answer of a sample: cached prefix + generated suffix (what is scored and cached)."""
    return list(sample.prefix_ids) + list(sample.completion_ids)


def outcomes_by_start(groups) -> tuple[tuple, tuple]:
    """(ids, successes, trials) over each group's scored samples that started from the prompt alone (an empty prefix:
    evidence of the prompt's whole-path success rate), then over those that continued a prefix (a cached path
    or a hint: they measure the prefix). A group appears in each part it has samples for.

    >>> from types import SimpleNamespace as S
    >>> g = S(index=4, acc=np.array([1.0, 0.0, 1.0]), scored=np.array([True, True, True]),
    ...       samples=[S(prefix_ids=(7,)), S(prefix_ids=(7,)), S(prefix_ids=())])
    >>> [tuple(x.tolist() for x in part) for part in outcomes_by_start([g])]
    [([4], [1.0], [1.0]), ([4], [1.0], [2.0])]
    """
    parts = ([], [], []), ([], [], [])
    for g in groups:
        starts = np.array([len(s.prefix_ids) > 0 for s in g.samples], dtype=bool)
        scored = np.asarray(g.scored, dtype=bool)  # an unscored sample is unknown, not a failure
        for part, mask in zip(parts, (~starts & scored, starts & scored)):
            if mask.any():
                part[0].append(g.index)
                part[1].append(float(np.asarray(g.acc)[mask].sum()))
                part[2].append(float(mask.sum()))
    return tuple((np.asarray(ids, dtype=np.int64), np.asarray(s, dtype=np.float64), np.asarray(k, dtype=np.float64))
                 for ids, s, k in parts)


def answer_lengths(samples) -> np.ndarray:
    """Length of each whole answer, prefix + suffix tokens."""
    return np.array([len(s.prefix_ids) + len(s.completion_ids) for s in samples], dtype=np.int64)


# ------------------------------------------------------------------------------------------ rewards


def length_aware_rewards(rewards, acc, lengths, groups, alpha: float = 0.01, reference: str = "all") -> np.ndarray:
    """RPO's group length-aware reward: correct answers get clip(r / (1 + exp(-alpha (l_ref - len))), 0.5, 1).

    l_ref is the mean length of the group: over all its samples (reference="all", docs/methods.md) or over its
    correct samples ("correct", the public code). Wrong answers keep their reward. Pure; returns a copy.

    >>> length_aware_rewards([1., 1., 0.], [1, 1, 0], [100, 300, 500], [0, 0, 0]).round(4).tolist()  # l_ref 300
    [0.8808, 0.5, 0.0]
    """
    out = np.asarray(rewards, dtype=np.float64).copy()
    correct = np.asarray(acc, dtype=np.float64) > 0
    lengths = np.asarray(lengths, dtype=np.float64)
    groups = np.asarray(groups)
    if not (out.shape == correct.shape == lengths.shape == groups.shape):
        raise ValueError("length_aware_rewards: rewards, acc, lengths and groups must have one entry per sample")
    if reference not in ("all", "correct"):
        raise ValueError(f"length_aware_rewards: reference must be 'all' or 'correct', got {reference!r}")
    for g in np.unique(groups[correct]):
        members = groups == g
        pool = members if reference == "all" else members & correct
        l_ref = lengths[pool].mean()
        shaped = members & correct
        out[shaped] = np.clip(out[shaped] / (1.0 + np.exp(-alpha * (l_ref - lengths[shaped]))), 0.5, 1.0)
    return out


def overlong_penalty(lengths, max_len: int, cache_len: int) -> np.ndarray:
    """DAPO's soft overlong punishment, to add to the reward: 0 up to max_len - cache_len, then a linear
    ramp (max_len - cache_len - len) / cache_len down to -1 at max_len, and -1 beyond. cache_len 0: off.

    >>> overlong_penalty([10, 12, 14, 16, 17], max_len=16, cache_len=4).tolist()
    [0.0, 0.0, -0.5, -1.0, -1.0]
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    if cache_len == 0:
        return np.zeros_like(lengths)
    if not 0 < cache_len <= max_len:
        raise ValueError(f"overlong_penalty: cache_len={cache_len} must be in [0, max_len={max_len}] (0 = off)")
    start = max_len - cache_len
    ramp = (start - lengths) / cache_len
    return np.where(lengths <= start, 0.0, np.where(lengths <= max_len, ramp, -1.0))


# ------------------------------------------------------------------------------------------ refresh


def choose_refresh(rewards, rng: np.random.Generator, epsilon: float = 0.5) -> int:
    """Which new path replaces the cached one: with probability epsilon the best reward (ties at random),
    else a uniformly random one. Always draws one uniform, then one integer (resume-exact streams)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.size == 0:
        raise ValueError("choose_refresh: the group has no samples to refresh the cache from")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"choose_refresh: epsilon={epsilon} must be a probability in [0, 1]")
    greedy = rng.random() < epsilon
    choices = np.flatnonzero(rewards == rewards.max()) if greedy else np.arange(rewards.size)
    return int(choices[rng.integers(choices.size)])


def refresh_cache(cache: ExperienceCache, groups, rng: np.random.Generator, step: int, epsilon: float = 0.5) -> int:
    """After the step, store one new whole answer (prefix + suffix) per non-empty group; returns how many.

    `groups` are rollout groups (index, samples, rewards: the final, shaped rewards).
    """
    ids, paths = [], []
    for g in groups:
        if len(g.samples) == 0:
            continue
        chosen = g.samples[choose_refresh(g.rewards, rng, epsilon)]
        ids.append(g.index)
        paths.append(answer_ids(chosen))
    cache.put_many(np.asarray(ids, dtype=np.int64), paths, step)
    return len(ids)


# -------------------------------------------------------------------------------------------- plans


@dataclass
class PartialPlan:
    """The requests of one generation batch, with what each cut and allowed (one entry per group).

    A group may also hold `whole[g]` whole-path samples, drawn from the prompt alone (the whole-path
    refresh): `with_counts` issues them as extra requests after the groups' own, and `finish` puts
    them back into their groups, after the group's suffixes. A hinted group (`hinted`) continues a
    prefix of a correct path instead of the cached one; `finish` marks its prefix as kept out of the
    loss (`Sample.masked_prefix`). Hinted groups are `cached` too: every group that continues a
    prefix is logged and counted as partial.
    """

    requests: list[GenRequest]
    cuts: np.ndarray  # m per group (0: no cached path, a full rollout, or a hint)
    budgets: np.ndarray  # most suffix tokens per group
    cached: np.ndarray  # bool: the group continues a prefix (cached path or hint)
    ages: np.ndarray  # steps since its path was stored (-1 when uncached)
    whole: np.ndarray | None = None  # whole-path samples still to draw per group (None: none)
    hinted: np.ndarray | None = None  # bool: the prefix is a hint (None: no group)

    def __post_init__(self) -> None:
        size = len(self.requests)
        self.whole = np.zeros(size, dtype=np.int64) if self.whole is None else np.asarray(self.whole, np.int64)
        self.hinted = np.zeros(size, dtype=bool) if self.hinted is None else np.asarray(self.hinted, bool)
        self._extra: list[tuple[int, int]] = []  # (group, whole samples) of the last with_counts

    def take(self, positions) -> "PartialPlan":
        """The plan of some of its groups (the prompts GVM or SPEED pre-samples): same prefixes and budgets.

        The taken groups' whole-path samples move to the returned plan (this plan keeps none of them):
        a group draws them once, in its first pass.
        """
        positions = np.asarray(positions, dtype=np.int64)
        taken = PartialPlan([self.requests[int(p)] for p in positions], self.cuts[positions], self.budgets[positions],
                            self.cached[positions], self.ages[positions], self.whole[positions].copy(),
                            self.hinted[positions])
        self.whole[positions] = 0
        return taken

    def with_counts(self, counts) -> list[GenRequest]:
        """The plan's requests with n samples each (counts broadcast over the groups), then one request
        from the prompt alone for each group with whole-path samples (min(whole, n) of its n)."""
        counts = np.broadcast_to(np.asarray(counts, dtype=np.int64), (len(self.requests),))
        whole = np.minimum(self.whole, counts)
        self._extra = [(int(g), int(whole[g])) for g in np.flatnonzero(whole)]
        own = [replace(r, n=int(k - w)) for r, k, w in zip(self.requests, counts, whole)]
        return own + [replace(self.requests[g], n=w, prefix_ids=(), max_new_tokens=None) for g, w in self._extra]

    def finish(self, samples: list[list[Sample]]) -> tuple[list[list[Sample]], list[int]]:
        """The engine's samples for `with_counts`'s requests as one list per group: each group's own samples
        cut to its budget (`clip`), then its whole-path samples; hinted prefixes marked as kept out of the loss.
        Returns them and the tokens cut off per group (generated all the same: book them as generation cost)."""
        size = len(self.requests)
        if len(samples) != size + len(self._extra):
            raise ValueError(f"PartialPlan.finish: {len(samples)} sample lists for {size} groups and "
                             f"{len(self._extra)} whole-path requests")
        groups, dropped = [], []
        for g in range(size):
            kept = [clip_to_budget(s, int(self.budgets[g])) for s in samples[g]]
            for s in kept:
                s.masked_prefix = len(s.prefix_ids) if self.hinted[g] else 0
            groups.append(kept)
            dropped.append(sum(len(s.completion_ids) for s in samples[g]) - sum(len(s.completion_ids) for s in kept))
        for (g, _), extra in zip(self._extra, samples[size:]):
            groups[g] = groups[g] + list(extra)
        return groups, dropped

    @staticmethod
    def concat(plans: list["PartialPlan"]) -> "PartialPlan":
        """One plan for several generation batches (a step's metrics)."""
        join = lambda name, dtype: np.concatenate([getattr(p, name) for p in plans]) if plans \
            else np.zeros(0, dtype=dtype)  # noqa: E731
        return PartialPlan([r for p in plans for r in p.requests], join("cuts", np.int64), join("budgets", np.int64),
                           join("cached", bool), join("ages", np.int64), join("whole", np.int64),
                           join("hinted", bool))

    def clip(self, samples: list[list[Sample]]) -> tuple[list[list[Sample]], int]:
        """Cut every sample to its group's budget; returns the samples and the tokens cut off (generated
        all the same: book them as generation cost)."""
        clipped = [[clip_to_budget(s, int(b)) for s in group] for group, b in zip(samples, self.budgets)]
        dropped = sum(len(s.completion_ids) for g in samples for s in g) - \
            sum(len(s.completion_ids) for g in clipped for s in g)
        return clipped, dropped


def partial_requests(cache: ExperienceCache, indices, prompt_ids_of: Callable[[int], list[int]], n_per_prompt,
                     L: int | str, rng: np.random.Generator, *, step: int, max_new_tokens: int,
                     budget: str = "limit", eos_token_id: int | None = None, usable=None) -> PartialPlan:
    """Requests for one generation batch: GenRequest(prompt, n, prefix = path[:len - m]) for cached prompts,
    a full rollout (empty prefix, budget max_new_tokens) for the others.

    Cuts are drawn for the cached prompts only, in the order of `indices`. With `eos_token_id`, a prefix
    holding EOS (a path with EOS before its end: not one the engine made) is refused. `usable` (bool per
    index) leaves the others' cached paths alone: they get full rollouts (a whole group, a hint).
    """
    from rollwise.rollout.engine import GenRequest

    indices = np.asarray(indices, dtype=np.int64)
    counts = np.broadcast_to(np.asarray(n_per_prompt, dtype=np.int64), indices.shape)
    cached = cache.has(indices) & (True if usable is None else np.asarray(usable, dtype=bool))
    ages = np.where(cached, cache.age(indices, step), -1)
    paths = [cache.get(int(i)) for i in indices[cached]]
    cuts = np.zeros(indices.size, dtype=np.int64)
    cuts[cached] = cut_lengths([p.size for p in paths], L, rng)
    prefixes: list[tuple[int, ...]] = [()] * indices.size
    for pos, path in zip(np.flatnonzero(cached), paths):
        prefix = tuple(int(t) for t in path[: path.size - cuts[pos]])
        if eos_token_id is not None and eos_token_id in prefix:
            raise ValueError(f"partial_requests: the cached path of prompt {indices[pos]} has EOS before its last "
                             "token; cache only engine completions (cut after their first EOS)")
        prefixes[pos] = prefix
    prefix_lengths = np.array([len(p) for p in prefixes], dtype=np.int64)
    budgets = np.full(indices.size, max_new_tokens, dtype=np.int64)
    budgets[cached] = suffix_budget(cuts[cached], prefix_lengths[cached], max_new_tokens, budget)
    # Full groups keep the sampling limit (None); a cached group's budget travels with its request.
    requests = [GenRequest(tuple(prompt_ids_of(int(i))), int(n), prefix, int(b) if c else None)
                for i, n, prefix, b, c in zip(indices, counts, prefixes, budgets, cached)]
    return PartialPlan(requests, cuts, budgets, cached, ages)


__all__ = ["PartialPlan", "answer_ids", "answer_lengths", "check_suffix_budget", "choose_refresh", "clip_to_budget",
           "cut_lengths", "length_aware_rewards", "outcomes_by_start", "overlong_penalty", "parse_cut",
           "partial_requests", "refresh_cache", "rpo_metrics", "suffix_budget"]
