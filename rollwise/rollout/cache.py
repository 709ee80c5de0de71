"""The RPO experience cache: one full completion (token ids) per prompt, for partial rollouts.

A path is the completion ids of one sample, prefix included (docs/methods.md section 4), with the EOS token
at its end when the sample finished. Partial rollouts cut the last m tokens of a prompt's path and
sample the group's suffixes from prompt + the rest; the refresh after the step stores a new path.

Storage is flat numpy, like the selectors' state : one int32 token buffer that paths are
appended to, and per-prompt arrays (offset, length, the step a path was stored at, the last time it
was used) indexed by pool position. Replacing or evicting a path leaves its old tokens as garbage in
the buffer; a full buffer is compacted when over a quarter of it is garbage (else grown by half), so
writes cost O(1) amortised and the buffer holds at most about twice the live tokens.

Each token also carries the step it was written at (its birth, a parallel int32 buffer): a path stored
as an old prefix + a new suffix keeps the prefix's births, so `staleness` reports how old the oldest
token of each path is, which the step a path was stored at (`age`) hides.

A token budget (`max_tokens_total`) bounds memory for large pools: after each `put`/`put_many`, the
least recently used paths (get or put) are evicted until the live tokens fit, and counted. An evicted
prompt is simply uncached again: its next visit is a full rollout that refills it.

`state_dict` holds only the live paths (and their births), concatenated in pool order, and the
per-prompt arrays: 100k prompts with 1,000-token paths save as two 400 MB int32 arrays plus a few
100k-long ones.
"""

from __future__ import annotations

import numpy as np

_NONE = -1  # length of a prompt without a cached path (paths are never empty)
_INT32_MAX = np.iinfo(np.int32).max


class ExperienceCache:
    """One token path per prompt id, bounded by a total token budget with LRU eviction.

    >>> cache = ExperienceCache(pool_size=3)
    >>> cache.put(1, [5, 6, 7, 1], step=2)
    >>> cache.has([0, 1]).tolist(), cache.get(1).tolist(), cache.age([1], step=5).tolist()
    ([False, True], [5, 6, 7, 1], [3])
    """

    def __init__(self, pool_size: int, max_tokens_total: int | None = None) -> None:
        if pool_size < 0:
            raise ValueError(f"ExperienceCache: pool_size={pool_size} must be >= 0")
        if max_tokens_total is not None and max_tokens_total < 1:
            raise ValueError(f"ExperienceCache: max_tokens_total={max_tokens_total} must be >= 1 (or None: no bound)")
        self.pool_size = pool_size
        self.max_tokens_total = max_tokens_total
        self.offset = np.zeros(pool_size, dtype=np.int64)
        self.length = np.full(pool_size, _NONE, dtype=np.int64)
        self.stored_step = np.zeros(pool_size, dtype=np.int64)
        self.last_used = np.zeros(pool_size, dtype=np.int64)
        self.clock = 0  # increments on every get/put: the LRU order
        self.evictions = 0
        self.buffer = np.zeros(0, dtype=np.int32)
        self.birth = np.zeros(0, dtype=np.int32)  # the step each buffered token was written at
        self.end = 0  # first free position of the buffer
        self.live_tokens = 0

    # ------------------------------------------------------------------------------------------ reading

    def __len__(self) -> int:
        """Number of prompts with a cached path."""
        return int((self.length != _NONE).sum())

    def has(self, ids) -> np.ndarray:
        """Which of the ids have a cached path (bool array)."""
        return self.length[self._checked(ids)] != _NONE

    def lengths(self, ids) -> np.ndarray:
        """Path lengths of the ids (-1 where none is cached)."""
        return self.length[self._checked(ids)].copy()

    def get(self, index: int) -> np.ndarray:
        """A copy of prompt `index`'s path (int32); counts as a use for LRU eviction."""
        index = int(self._checked([index])[0])
        if self.length[index] == _NONE:
            raise KeyError(f"ExperienceCache: prompt {index} has no cached path (check has() first; "
                           "an evicted or never-visited prompt needs a full rollout)")
        self.last_used[index] = self._tick()
        start = self.offset[index]
        return self.buffer[start : start + self.length[index]].copy()

    def births(self, index: int) -> np.ndarray:
        """The step each token of prompt `index`'s path was written at (a copy; not a use for LRU)."""
        index = int(self._checked([index])[0])
        if self.length[index] == _NONE:
            raise KeyError(f"ExperienceCache: prompt {index} has no cached path")
        start = self.offset[index]
        return self.birth[start : start + self.length[index]].astype(np.int64)

    def staleness(self, step: int, older_than: int) -> dict:
        """How old the cached tokens are at `step`: the age of each path's oldest token (mean, max) and the
        share of all cached tokens older than `older_than` steps (None where nothing is cached)."""
        ids = np.flatnonzero(self.length != _NONE)
        if ids.size == 0:
            return {"oldest_mean": None, "oldest_max": None, "stale_share": None}
        births = self._concatenated(ids, self.birth)
        starts = np.cumsum(self.length[ids]) - self.length[ids]
        oldest = step - np.minimum.reduceat(births.astype(np.int64), starts)
        return {"oldest_mean": float(oldest.mean()), "oldest_max": int(oldest.max()),
                "stale_share": float((step - births.astype(np.int64) > older_than).mean())}

    def age(self, ids, step: int) -> np.ndarray:
        """Steps since each path was stored (step - stored step); -1 where none is cached."""
        ids = self._checked(ids)
        return np.where(self.length[ids] != _NONE, step - self.stored_step[ids], -1)

    def memory_bytes(self) -> int:
        """Bytes held: the token buffer (garbage and spare capacity included) and the per-prompt arrays."""
        arrays = (self.buffer, self.birth, self.offset, self.length, self.stored_step, self.last_used)
        return int(sum(a.nbytes for a in arrays))

    # ------------------------------------------------------------------------------------------ writing

    def put(self, index: int, tokens, step: int, births=None) -> None:
        """Store `tokens` as prompt `index`'s path (replacing any), then evict to the budget."""
        self.put_many([index], [tokens], step, None if births is None else [births])

    def put_many(self, ids, paths, step: int, births=None) -> None:
        """Store one path per id (later entries win on repeated ids), then evict to the budget once.

        `births` (one array per path, or None) gives each token's birth step; by default every token is
        born at `step`. A path kept as an old prefix + a new suffix passes the prefix's births.
        """
        ids = self._checked(ids)
        if len(paths) != len(ids) or (births is not None and len(births) != len(ids)):
            raise ValueError(f"ExperienceCache.put_many: {len(ids)} ids but {len(paths)} paths"
                             + ("" if births is None else f" and {len(births)} birth arrays"))
        arrays = [self._checked_path(int(i), p) for i, p in zip(ids, paths)]
        born = [np.full(a.size, step, dtype=np.int32) if births is None else self._checked_births(a, b, step)
                for a, b in zip(arrays, births if births is not None else [None] * len(arrays))]
        for index, path, birth in zip(ids, arrays, born):
            self._store(int(index), path, step, birth)
        self._evict_to_budget()

    def _store(self, index: int, path: np.ndarray, step: int, birth: np.ndarray) -> None:
        self._forget(index)
        self._reserve(path.size)
        self.buffer[self.end : self.end + path.size] = path
        self.birth[self.end : self.end + path.size] = birth
        self.offset[index], self.length[index] = self.end, path.size
        self.end += path.size
        self.live_tokens += path.size
        self.stored_step[index] = step
        self.last_used[index] = self._tick()

    def _forget(self, index: int) -> None:
        if self.length[index] != _NONE:
            self.live_tokens -= int(self.length[index])
            self.length[index] = _NONE

    def _reserve(self, size: int) -> None:
        """Room for `size` more tokens in a full buffer: compact it when over a quarter is garbage, else grow.

        Either way the new capacity is 1.5 x what it must hold, so capacity stays below about 2 x the live
        tokens (plus the pending write), and each compaction is paid for by the writes that filled it.
        """
        if self.end + size <= self.buffer.size:
            return
        if 4 * (self.end - self.live_tokens) > self.end:
            self._compact(extra=size)
        else:
            capacity = max(3 * (self.end + size) // 2, 1024)
            self.buffer = _grown(self.buffer, self.end, capacity)
            self.birth = _grown(self.birth, self.end, capacity)

    def _compact(self, extra: int = 0) -> None:
        """Move the live paths to the front of a new buffer (pool order), with room for `extra` more."""
        ids = np.flatnonzero(self.length != _NONE)
        tokens, births = self._concatenated(ids), self._concatenated(ids, self.birth)
        self._set_buffer(tokens, births, ids, capacity=3 * (tokens.size + extra) // 2)

    def _set_buffer(self, tokens: np.ndarray, births: np.ndarray, ids: np.ndarray, capacity: int) -> None:
        """Make `tokens` (the paths of ids, end to end) the buffer and point each id at its path."""
        self.buffer = np.zeros(max(capacity, tokens.size, 1024), dtype=np.int32)
        self.buffer[: tokens.size] = tokens
        self.birth = np.zeros(self.buffer.size, dtype=np.int32)
        self.birth[: births.size] = births
        if ids.size:
            self.offset[ids] = np.cumsum(self.length[ids]) - self.length[ids]
        self.end = tokens.size

    def _evict_to_budget(self) -> None:
        if self.max_tokens_total is None or self.live_tokens <= self.max_tokens_total:
            return
        ids = np.flatnonzero(self.length != _NONE)
        oldest_first = ids[np.argsort(self.last_used[ids], kind="stable")]
        freed = np.cumsum(self.length[oldest_first])
        count = int(np.searchsorted(freed, self.live_tokens - self.max_tokens_total)) + 1
        for index in oldest_first[:count]:
            self._forget(int(index))
        self.evictions += count

    # -------------------------------------------------------------------------------------------- state

    def state_dict(self) -> dict:
        """The live paths (pool order, concatenated) and the per-prompt arrays; no garbage."""
        ids = np.flatnonzero(self.length != _NONE)
        return {"pool_size": self.pool_size, "max_tokens_total": self.max_tokens_total,
                "tokens": self._concatenated(ids), "births": self._concatenated(ids, self.birth),
                "length": self.length.copy(),
                "stored_step": self.stored_step.copy(), "last_used": self.last_used.copy(),
                "clock": self.clock, "evictions": self.evictions}

    def load_state_dict(self, state: dict) -> None:
        if int(state["pool_size"]) != self.pool_size:
            raise ValueError(f"experience cache state is for a pool of {state['pool_size']} prompts, this pool has "
                             f"{self.pool_size}: resume with the same data")
        length = np.asarray(state["length"], dtype=np.int64)
        tokens = np.asarray(state["tokens"], dtype=np.int32)
        live = length != _NONE
        if int(length[live].sum()) != tokens.size:
            raise ValueError("experience cache state is inconsistent: its lengths do not add up to its tokens "
                             "(a damaged checkpoint?): resume from an earlier checkpoint")
        self.max_tokens_total = state["max_tokens_total"]
        self.length = length.copy()
        self.stored_step = np.asarray(state["stored_step"], dtype=np.int64).copy()
        self.last_used = np.asarray(state["last_used"], dtype=np.int64).copy()
        self.clock, self.evictions = int(state["clock"]), int(state["evictions"])
        self.offset = np.zeros(self.pool_size, dtype=np.int64)
        # A checkpoint written before births were kept: every token born when its path was stored.
        births = np.asarray(state["births"], dtype=np.int32) if "births" in state else \
            np.repeat(self.stored_step[live], length[live]).astype(np.int32)
        self._set_buffer(tokens, births, np.flatnonzero(live), capacity=3 * tokens.size // 2)
        self.live_tokens = tokens.size

    # ---------------------------------------------------------------------------------------- internals

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def _concatenated(self, ids: np.ndarray, buffer: np.ndarray | None = None) -> np.ndarray:
        """The paths of ids (or their births), end to end, gathered with one index array (no Python loop)."""
        buffer = self.buffer if buffer is None else buffer
        lengths = self.length[ids]
        if lengths.sum() == 0:
            return np.zeros(0, dtype=np.int32)
        starts_out = np.cumsum(lengths) - lengths  # where each path begins in the output
        shift = np.repeat(self.offset[ids] - starts_out, lengths)
        return buffer[shift + np.arange(int(lengths.sum()))].copy()

    def _checked(self, ids) -> np.ndarray:
        ids = np.atleast_1d(np.asarray(ids))
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= self.pool_size):
            raise IndexError(f"ExperienceCache: prompt ids must be integers in [0, {self.pool_size}), got {ids}")
        return ids.astype(np.int64)

    def _checked_path(self, index: int, tokens) -> np.ndarray:
        path = np.asarray(tokens)
        if path.ndim != 1 or path.size == 0:
            raise ValueError(f"ExperienceCache: the path of prompt {index} must be a non-empty 1-d list of token "
                             f"ids (got shape {path.shape}); a sample with no tokens cannot seed a partial rollout")
        if path.dtype.kind not in "iu" or path.min() < 0 or path.max() > _INT32_MAX:
            raise ValueError(f"ExperienceCache: the path of prompt {index} holds values that are not token ids "
                             "in [0, 2**31)")
        if self.max_tokens_total is not None and path.size > self.max_tokens_total:
            raise ValueError(f"ExperienceCache: the path of prompt {index} has {path.size} tokens, more than the "
                             f"whole cache budget max_tokens_total={self.max_tokens_total}: raise the budget to at "
                             "least max_new_tokens")
        return path.astype(np.int32)

    @staticmethod
    def _checked_births(path: np.ndarray, births, step: int) -> np.ndarray:
        births = np.asarray(births, dtype=np.int64)
        if births.shape != path.shape or (births.size and (births.min() < 0 or births.max() > step)):
            raise ValueError(f"ExperienceCache: births must give one step in [0, {step}] per token of the path "
                             f"({path.size}), got {births.tolist()[:8]}")
        return births.astype(np.int32)


def _grown(buffer: np.ndarray, used: int, capacity: int) -> np.ndarray:
    grown = np.zeros(capacity, dtype=buffer.dtype)
    grown[:used] = buffer[:used]
    return grown
