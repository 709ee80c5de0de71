"""Prompt features for predictors that share evidence: groups, task, length, hashed character n-grams.

A *group* is the set of prompts with equal values of a few metadata fields (and the same task):
prompts that move together as the policy learns. For reasoning-gym tasks the default keys are the
task's own difficulty fields (those named in `metadata["difficulty"]` that every item carries as a
plain value: `num_terms`, `num_digits` for basic_arithmetic); for file pools the user names metadata
columns (`group_keys`), else the whole task is one group.

Features are arrays in pool order, built in one pass over the items plus vectorised numpy (measured
by bench.costs.selector_cost for a million prompts), and saved as `features.npz` beside an outcome log so that a log replays
without its pool (the TRL / verl plug-ins write both). `rollwise.predict.run_features` reads that file,
or rebuilds the pool from the run's `config.yaml` and checks it against the run's recorded pool hash.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rollwise.store import safefiles

log = logging.getLogger(__name__)

FEATURES_FILE = "features.npz"
FEATURES_VERSION = 1


@dataclass
class PromptFeatures:
    """Per-prompt features in pool order (see the module docstring).

    `ngram_indptr` / `ngram_indices` hold hashed character n-grams as a CSR matrix (row i's buckets are
    indices[indptr[i]:indptr[i+1]]); empty when not built.
    """

    group: np.ndarray          # int64 group index per prompt
    group_names: np.ndarray    # str, one per group: "task|key=value,..."
    task: np.ndarray           # int64 task index per prompt
    task_names: np.ndarray     # str, one per task
    length: np.ndarray         # float64 prompt length in characters
    cell: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # group x length bucket
    keys: tuple[str, ...] = ()
    pool_hash: str = ""
    ngram_indptr: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    ngram_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    ngram_buckets: int = 0

    def __post_init__(self) -> None:
        if len(self.cell) != len(self.group):
            self.cell = length_cells(self.group, self.length)

    def __len__(self) -> int:
        return len(self.group)

    @property
    def num_groups(self) -> int:
        return len(self.group_names)

    @property
    def num_cells(self) -> int:
        return int(self.cell.max()) + 1 if len(self.cell) else 0

    def save(self, path: str | Path) -> None:
        """Write the features as one .npz of plain arrays (no pickles)."""
        meta = {"version": FEATURES_VERSION, "keys": list(self.keys), "pool_hash": self.pool_hash,
                "ngram_buckets": self.ngram_buckets}
        buffer = io.BytesIO()
        np.savez(buffer, group=self.group, group_names=self.group_names.astype(str), task=self.task,
                 task_names=self.task_names.astype(str), length=self.length, ngram_indptr=self.ngram_indptr,
                 ngram_indices=self.ngram_indices, meta=np.array(json.dumps(meta)))
        safefiles.write_atomic(path, buffer.getvalue())  # never through a link in the run directory

    @classmethod
    def load(cls, path: str | Path) -> "PromptFeatures":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a rollwise features file ({exc})") from None
        try:
            meta = json.loads(str(arrays.pop("meta")))
            if meta.get("version") != FEATURES_VERSION:
                raise ValueError(f"format version {meta.get('version')!r}, this rollwise reads {FEATURES_VERSION}")
            features = cls(group=arrays["group"].astype(np.int64), group_names=arrays["group_names"],
                           task=arrays["task"].astype(np.int64), task_names=arrays["task_names"],
                           length=arrays["length"].astype(np.float64), keys=tuple(meta["keys"]),
                           pool_hash=meta["pool_hash"], ngram_indptr=arrays["ngram_indptr"].astype(np.int64),
                           ngram_indices=arrays["ngram_indices"].astype(np.int32),
                           ngram_buckets=int(meta["ngram_buckets"]))
        except (KeyError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: damaged rollwise features file ({exc})") from None
        features.check()
        return features

    def check(self) -> None:
        n = len(self.group)
        for name in ("task", "length"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"features: {name} has {len(getattr(self, name))} entries for {n} prompts")
        if n and (self.group.min() < 0 or self.group.max() >= len(self.group_names)):
            raise ValueError("features: a group index has no group name")
        if len(self.ngram_indptr) not in (1, n + 1):
            raise ValueError("features: n-gram rows do not match the pool")


def length_cells(group: np.ndarray, length: np.ndarray, buckets: int = 8) -> np.ndarray:
    """Cell index per prompt: its group crossed with a length bucket (length quantiles within the group,
    at most `buckets`; distinct lengths are their own bucket when there are few). Vectorised.

    >>> length_cells(np.array([0, 0, 1, 1]), np.array([5., 9., 5., 5.])).tolist()
    [0, 1, 2, 2]
    """
    group, length = np.asarray(group, dtype=np.int64), np.asarray(length, dtype=np.float64)
    if not len(group):
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((length, group))
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    sizes = np.diff(np.r_[starts, len(group)])
    rank = np.arange(len(group)) - np.repeat(starts, sizes)
    bucket = np.empty(len(group), dtype=np.int64)
    bucket[order] = rank * buckets // np.repeat(sizes, sizes)
    # equal lengths share a bucket: use the smallest bucket any prompt of that length got in its group
    whole = np.rint(length).astype(np.int64)
    pairs = np.unique(group * (int(whole.max()) + 1) + whole, return_inverse=True)[1].ravel()
    smallest = np.full(pairs.max() + 1, buckets, dtype=np.int64)
    np.minimum.at(smallest, pairs, bucket)
    return np.unique(group * (buckets + 1) + smallest[pairs], return_inverse=True)[1].astype(np.int64).ravel()


def default_group_keys(pool) -> tuple[str, ...]:
    """The task's difficulty fields that every item carries as a scalar (reasoning-gym); () for files."""
    items = list(pool)
    if not items:
        return ()
    names = sorted({k for it in items for k in (it.metadata.get("difficulty") or {})})
    return tuple(k for k in names if all(_scalar(it.metadata.get(k)) for it in items))


def _scalar(value) -> bool:
    return isinstance(value, (str, int, float, bool))


def build_features(pool, group_keys: tuple[str, ...] | None = None, ngram_n: int = 3,
                   ngram_buckets: int = 0) -> PromptFeatures:
    """Features of a `rollwise.data.pool.PromptPool`; group_keys None: `default_group_keys(pool)`.

    A named key missing from an item counts as its own value (`key=None`). ngram_buckets > 0 also
    hashes each prompt's character n-grams into that many buckets (for `ngram` predictors).
    """
    keys = tuple(default_group_keys(pool) if group_keys is None else group_keys)
    items = list(pool)
    group_index: dict = {}
    task_index: dict = {}
    group, task = np.empty(len(items), dtype=np.int64), np.empty(len(items), dtype=np.int64)
    for i, it in enumerate(items):  # one pass, dict lookups: about 1 s per million prompts
        name = str(it.metadata.get("source_dataset") or pool.task)
        task[i] = task_index.setdefault(name, len(task_index))
        group[i] = group_index.setdefault((name, tuple(_hashable(it.metadata.get(k)) for k in keys)), len(group_index))
    group_names = np.array([f"{name}|" + ",".join(f"{k}={json.dumps(v)}" for k, v in zip(keys, values))
                            for name, values in group_index], dtype=str)
    prompts = [it.prompt for it in items]
    features = PromptFeatures(group=group, group_names=group_names, task=task,
                              task_names=np.array(list(task_index), dtype=str),
                              length=np.fromiter(map(len, prompts), dtype=np.float64, count=len(prompts)),
                              keys=keys, pool_hash=pool.content_hash())
    if ngram_buckets > 0:
        features.ngram_indptr, features.ngram_indices = hashed_ngrams(prompts, ngram_n, ngram_buckets)
        features.ngram_buckets = ngram_buckets
    return features


def _hashable(value):
    """A metadata value as a dictionary key: scalars as they are, anything else as canonical JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True)


def hashed_ngrams(prompts: list[str], n: int = 3, buckets: int = 1 << 18,
                  max_chars: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Hashed character n-grams of each prompt as CSR (indptr, indices); vectorised over all prompts.

    Each prompt's first max_chars UTF-8 bytes are used; an n-gram is a polynomial hash of n bytes
    modulo `buckets`. Nothing is downloaded: no tokenizer or embedding model.

    >>> indptr, idx = hashed_ngrams(["abcd", "ab"], n=3, buckets=1000)
    >>> indptr.tolist(), len(idx)
    ([0, 2, 2], 2)
    """
    encoded = [p.encode("utf-8", "surrogatepass")[:max_chars] for p in prompts]
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.int64)
    counts = np.maximum(lengths - n + 1, 0)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, dtype=np.int64)
    # window start positions in `data`: each prompt's valid starts, concatenated
    offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], counts) + np.repeat(starts, counts)
    value = np.zeros(offsets.size, dtype=np.int64)
    for j in range(n):
        value = (value * 1_000_003 + data[offsets + j]) % 2_147_483_647
    return indptr.astype(np.int64), (value % buckets).astype(np.int32)
