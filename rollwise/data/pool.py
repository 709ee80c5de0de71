"""Prompt pools: the training prompts and the held-out set, with stable unique ids.

A pool is built from a reasoning-gym task (generated offline, deterministic in `data_seed`) or from a
user file: JSONL, Parquet, or a directory saved with Hugging Face `datasets.save_to_disk`, each row
holding `id`, `prompt` and `answer` (further columns become metadata). Every problem with the data is
raised here, naming the file, row and column, before any compute is spent.

Inside rollwise, prompts are addressed by their position 0..N-1 in the pool (`index`), which is what
selectors index their flat arrays with; `pool.ids[index]` is the user's id. Ids are what the user
wrote, so a pool also has content hashes (`item_hashes`, `content_hash`): an earlier run's prior or a
resumed run can check that an id still means the same prompt.

Files are read as streams; JSONL through `rollwise.data.jsonl` (strict JSON, rows split at newlines only).
Every format gets the same checks of each value: ids are integers in 0 .. 2**63 - 1, prompts and
answers non-empty valid Unicode, answers finite and at most MAX_REFERENCE_CHARS long, metadata at
most MAX_NESTING levels deep.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from rollwise.data.jsonl import DataError, jsonl_rows, short_repr

INT64_MAX = 2**63 - 1
MAX_NESTING = 64  # metadata levels; deeper values would overflow the recursive code that walks them
# A reference answer longer than any answer the guard lets a model give (rollwise.verify.guard's
# MAX_ANSWER_CHARS) can never be matched, and each score of a huge one is paid in the trainer,
# outside the verifier's batch budget (a 60 MB answer cost 0.16 s per score): refused at load.
MAX_REFERENCE_CHARS = 10_000
# reasoning-gym 0.1.25 tasks (default options) whose items differ between processes with different
# PYTHONHASHSEED (set iteration order) or with what the process generated before: generated in a
# fresh child process under a fixed hash seed (rollwise.data.hashseed), which makes them reproducible.
HASH_DEPENDENT = frozenset({"intermediate_integration", "isomorphic_strings", "knight_swap",
                            "polynomial_multiplication", "ransom_note", "sokoban", "word_ladder", "zebra_puzzles"})
# Items that differ from one generation to the next even then: no pool of them can be rebuilt.
NOT_REPRODUCIBLE = frozenset({"codeio"})
PARQUET_BATCH_ROWS = 8192


def item_hash(prompt: str, answer: str) -> int:
    """A 64-bit content hash of one prompt and its reference answer: the first 8 bytes of a SHA-256.

    Stable across processes and machines (unlike `hash`). The prompt's byte length goes first, so
    ("ab", "c") and ("a", "bc") differ. Write it as `f"{h:016x}"` in a prior file's `hash` field.
    """
    return int.from_bytes(_digest8(prompt, answer), "big")


def _digest8(prompt: str, answer: str) -> bytes:
    p = prompt.encode("utf-8", "surrogatepass")
    data = len(p).to_bytes(8, "little") + p + answer.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).digest()[:8]


@dataclass(frozen=True)
class PoolItem:
    """One prompt: the user's id, the question, the reference answer, and JSON-safe metadata.

    `entry` is the reasoning-gym entry its scorer needs (None for file data).
    """

    id: int
    prompt: str
    answer: str
    metadata: dict = field(default_factory=dict)
    entry: dict | None = None


@dataclass
class PromptPool:
    """An ordered set of items with unique ids; `task` names the verifier family ('file' for user data)."""

    items: list[PoolItem]
    task: str
    source: str = ""
    ids: np.ndarray = field(init=False)
    _hashes: np.ndarray | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            self.ids = np.asarray([it.id for it in self.items], dtype=np.int64)
        except OverflowError:
            raise DataError(f"{self.source or 'pool'}: a prompt id lies outside int64; ids must be 0 .. 2**63 - 1") \
                from None
        seen: dict[int, int] = {}
        for row, it in enumerate(self.items):
            if it.id in seen:
                raise DataError(f"{self.source or 'pool'}: prompt id {it.id} appears twice (rows {seen[it.id] + 1} and {row + 1})")
            seen[it.id] = row
        self._index = seen

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> PoolItem:
        return self.items[int(index)]

    def __iter__(self) -> Iterator[PoolItem]:
        return iter(self.items)

    def index_of(self, prompt_id: int) -> int:
        """Position of a user id in the pool; KeyError naming the id when absent."""
        try:
            return self._index[int(prompt_id)]
        except KeyError:
            raise KeyError(f"prompt id {prompt_id} is not in {self.source or 'the pool'}") from None

    def indices_of(self, prompt_ids: np.ndarray) -> np.ndarray:
        """Positions of many user ids at once (int64, -1 where an id is not in the pool); vectorised."""
        prompt_ids = np.asarray(prompt_ids, dtype=np.int64)
        if not len(self.ids):
            return np.full(len(prompt_ids), -1, dtype=np.int64)
        order = np.argsort(self.ids, kind="stable")
        ordered = self.ids[order]
        pos = np.minimum(np.searchsorted(ordered, prompt_ids), len(ordered) - 1)
        return np.where(ordered[pos] == prompt_ids, order[pos], -1).astype(np.int64)

    def item_hash(self, index: int) -> int:
        """The content hash (`item_hash(prompt, answer)`) of the item at a position."""
        return int(self.item_hashes()[int(index)])

    def item_hashes(self) -> np.ndarray:
        """Content hashes of all items in pool order (uint64): `item_hash(prompt, answer)` per item.

        Computed once and kept (1 to 2 s per million short prompts); metadata is not part of it.
        """
        if self._hashes is None:
            joined = b"".join(_digest8(it.prompt, it.answer) for it in self.items)
            self._hashes = np.frombuffer(joined, dtype=">u8").astype(np.uint64)
        return self._hashes

    def content_hash(self) -> str:
        """Hex SHA-256 of the ids, their order and every item's prompt and answer; equal in any process.

        Two pools with the same value address the same prompts by the same ids and positions, so a
        resumed run can check it continues on its pool. Metadata, the task name and the source path
        are left out (a moved file is the same pool).
        """
        digest = hashlib.sha256(b"rollwise-pool-v1")
        digest.update(len(self.items).to_bytes(8, "little"))
        digest.update(self.ids.astype("<i8").tobytes())
        digest.update(self.item_hashes().astype("<u8").tobytes())
        return digest.hexdigest()


# ---------------------------------------------------------------------------- reasoning-gym


def json_safe(value: Any, _depth: int = 0) -> Any:
    """Metadata from reasoning-gym holds numpy strings and tuples; make it plain JSON.

    DataError for values nested deeper than MAX_NESTING levels (they would overflow later walks).
    """
    if _depth > MAX_NESTING:
        raise DataError(f"nested deeper than {MAX_NESTING} levels; flatten it")
    if isinstance(value, dict):
        return {str(k): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, _depth + 1) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def reasoning_gym_pools(task: str, options: dict, train_size: int, eval_size: int, seed: int) -> tuple[PromptPool, PromptPool]:
    """Generate a training pool and a held-out set with no question in common.

    Small task spaces repeat questions, so items are drawn until enough distinct ones exist;
    the first `train_size` distinct questions form the pool and the next `eval_size` the held-out set.
    """
    entries = distinct_entries(task, options, train_size + eval_size, seed)

    def pool(part: list[dict], name: str) -> PromptPool:
        items = [PoolItem(id=i, prompt=e["question"], answer=str(e["answer"]), metadata=e.get("metadata", {}), entry=e)
                 for i, e in enumerate(part)]
        return PromptPool(items, task, f"{task}[{name}]")

    return pool(entries[:train_size], "train"), pool(entries[train_size:], "eval")


def distinct_entries(task: str, options: dict, wanted: int, seed: int) -> list[dict]:
    """The first `wanted` distinct items of a reasoning-gym task, as JSON-safe entries.

    Tasks whose items depend on Python's hash randomisation (HASH_DEPENDENT) are generated under a
    fixed hash seed (`rollwise.data.hashseed`), so that every process builds the same pool.
    """
    from rollwise.data import hashseed

    if task in NOT_REPRODUCIBLE:
        raise DataError(f"reasoning-gym task {task!r} generates different items each time for the same data_seed, so "
                        "its pool could not be rebuilt to resume or compare runs: export the items you want once to "
                        "a JSONL file and train with task=file")
    if task in HASH_DEPENDENT and not hashseed.fixed():
        return hashseed.call_with_fixed_hash_seed("rollwise.data.pool", "distinct_entries", task, options, wanted, seed)
    import reasoning_gym

    size = max(4 * wanted, 1000)
    try:
        dataset = reasoning_gym.create_dataset(task, size=size, seed=seed, **options)
    except Exception as exc:  # reasoning-gym raises several kinds for bad names and options
        raise DataError(f"reasoning-gym task {task!r} with options {short_repr(options, 300)}: "
                        f"{short_repr(str(exc), 300)}") from exc
    seen: set[str] = set()
    entries: list[dict] = []
    for i in range(size):
        entry = dataset[i]
        if entry["question"] not in seen:
            seen.add(entry["question"])
            entries.append(json_safe(entry))
        if len(entries) == wanted:
            break
    if len(entries) < wanted:
        raise DataError(
            f"reasoning-gym task {task!r} produced only {len(entries)} distinct questions, fewer than "
            f"train_size + eval_size = {wanted}: widen the task options or shrink the pools"
        )
    return entries


# ---------------------------------------------------------------------------- user files

REQUIRED = ("id", "prompt", "answer")


def load_file_pool(path: str | Path) -> PromptPool:
    """Load a JSONL file, a Parquet file or a saved `datasets` directory into a pool."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir():
        rows = _rows_from_datasets_dir(path)
    elif path.suffix == ".parquet":
        rows = _rows_from_parquet(path)
    elif path.suffix in (".jsonl", ".json"):
        rows = jsonl_rows(path)
    else:
        raise DataError(f"{path}: unknown format (expected .jsonl, .parquet or a saved datasets directory)")
    items = [_item_from_row(row, f"{path}: row {n}") for n, row in rows]
    if not items:
        raise DataError(f"{path}: no rows")
    return PromptPool(items, "file", str(path))


def _rows_from_parquet(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    n = 0
    try:  # batches of rows: a large file is never decoded whole
        for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                n += 1
                yield n, row
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for damaged files
        raise DataError(f"{path}: unreadable Parquet file (after row {n}: {short_repr(exc, 200)})") from exc


def _rows_from_datasets_dir(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        import datasets
    except ImportError as exc:
        raise DataError(f"{path}: reading a saved datasets directory needs `pip install datasets`") from exc
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(f"{path}: not a directory saved by datasets.save_to_disk ({exc})") from exc
    if isinstance(ds, datasets.DatasetDict):
        raise DataError(f"{path}: holds splits {list(ds)}; point at one split's directory")
    for n, row in enumerate(ds, start=1):  # memory-mapped Arrow: rows are read as iterated
        yield n, row


def _item_from_row(row: dict, where: str) -> PoolItem:
    """One validated item; the same checks for JSONL, Parquet and datasets rows."""
    for col in REQUIRED:
        if col not in row or row[col] is None:
            raise DataError(f"{where}: missing column {col!r}")
    pid = parse_id(row["id"], f"{where}: column 'id'")
    prompt, answer = row["prompt"], row["answer"]
    if not isinstance(prompt, str):
        raise DataError(f"{where}: column 'prompt' must be a string, got {type(prompt).__name__}")
    bad_answer = isinstance(answer, bool) or not isinstance(answer, (str, int, float))
    if bad_answer or (isinstance(answer, float) and not math.isfinite(answer)):
        raise DataError(f"{where}: column 'answer' must be a string or finite number, got {short_repr(answer)}")
    answer = str(answer)
    if len(answer) > MAX_REFERENCE_CHARS:
        raise DataError(f"{where}: column 'answer' has {len(answer)} characters, over the {MAX_REFERENCE_CHARS} a "
                        "reference answer may have (no model answer longer than that is ever scored)")
    for col, text in (("prompt", prompt), ("answer", answer)):
        if not text.strip():
            raise DataError(f"{where}: column {col!r} is empty")
        _check_unicode(text, f"{where}: column {col!r}")
    meta = {}
    for key, value in row.items():
        if key not in REQUIRED:
            try:
                meta[str(key)] = json_safe(value)
            except DataError as exc:
                raise DataError(f"{where}: column {key!r}: {exc}") from None
    return PoolItem(id=pid, prompt=prompt, answer=answer, metadata=meta)


def parse_id(value: Any, where: str) -> int:
    """A prompt id as an int in 0 .. 2**63 - 1 (selectors and selector.npz hold ids as int64).

    Integral floats (3.0: Parquet and pandas write integer columns with gaps as floats) are accepted;
    bools, strings, fractions, NaN and negative or larger numbers are DataErrors naming `where`.
    """
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer() \
            and abs(value) <= 2**53:  # beyond 2**53 a float no longer holds every integer exactly
        value = int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise DataError(f"{where} must be a non-negative integer, got {short_repr(value)}")
    if value > INT64_MAX:
        raise DataError(f"{where} must be a non-negative integer below 2**63 (ids are int64), got {short_repr(value)}")
    return int(value)


def _check_unicode(text: str, where: str) -> None:
    """A lone surrogate (JSON "\\ud800" without its pair) is not text: tokenizers and logs fail on it later."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{where}: lone surrogate {text[exc.start]!r} at character {exc.start + 1} "
                        "(an unpaired \\ud800-\\udfff escape); fix the escape") from None


def build_pools(cfg) -> tuple[PromptPool, PromptPool]:
    """The training pool and held-out set a RunConfig asks for."""
    if cfg.task == "file":
        train = load_file_pool(cfg.train_file)
        if not cfg.eval_file:
            raise DataError("task=file needs eval_file: a held-out set that does not overlap train_file")
        held_out = load_file_pool(cfg.eval_file)
        overlap = {it.prompt for it in train} & {it.prompt for it in held_out}
        if overlap:
            raise DataError(f"{cfg.eval_file}: {len(overlap)} prompt(s) also in {cfg.train_file}, e.g. {next(iter(overlap))[:80]!r}")
        return train, held_out
    return reasoning_gym_pools(cfg.task, cfg.task_options, cfg.train_size, cfg.eval_size, cfg.data_seed)
