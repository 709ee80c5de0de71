"""Prompt pools: the training prompts and the held-out set, with stable unique ids.

A pool is built from a reasoning-gym task (generated offline, deterministic in `data_seed`) or from a
user file: JSONL, Parquet, or a directory saved with Hugging Face `datasets.save_to_disk`, each row
holding `id`, `prompt` and `answer` (further columns become metadata). Every problem with the data is
raised here, naming the file, row and column, before any compute is spent.

Inside rollwise, prompts are addressed by their position 0..N-1 in the pool (`index`), which is what
selectors index their flat arrays with; `pool.ids[index]` is the user's id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np


class DataError(ValueError):
    """A problem with input data, raised at load time with the file, row and column."""


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

    def __post_init__(self) -> None:
        self.ids = np.asarray([it.id for it in self.items], dtype=np.int64)
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


# ---------------------------------------------------------------------------- reasoning-gym


def json_safe(value: Any) -> Any:
    """Metadata from reasoning-gym holds numpy strings and tuples; make it plain JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
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
    import reasoning_gym

    wanted = train_size + eval_size
    size = max(4 * wanted, 1000)
    try:
        dataset = reasoning_gym.create_dataset(task, size=size, seed=seed, **options)
    except Exception as exc:  # reasoning-gym raises several kinds for bad names and options
        raise DataError(f"reasoning-gym task {task!r} with options {options}: {exc}") from exc
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

    def pool(part: list[dict], name: str) -> PromptPool:
        items = [PoolItem(id=i, prompt=e["question"], answer=str(e["answer"]), metadata=e.get("metadata", {}), entry=e)
                 for i, e in enumerate(part)]
        return PromptPool(items, task, f"{task}[{name}]")

    return pool(entries[:train_size], "train"), pool(entries[train_size:], "eval")


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


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-empty line; DataError naming the row for bad JSON or non-objects."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc})") from exc
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: row {n}: not valid JSON ({exc.msg}); is the file truncated?") from exc
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {n}: expected a JSON object, got {type(row).__name__}")
        yield n, row


def _rows_from_parquet(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for damaged files
        raise DataError(f"{path}: unreadable Parquet file ({exc})") from exc
    for n, row in enumerate(table.to_pylist(), start=1):
        yield n, row


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
    for n, row in enumerate(ds, start=1):
        yield n, row


def _item_from_row(row: dict, where: str) -> PoolItem:
    for col in REQUIRED:
        if col not in row or row[col] is None:
            raise DataError(f"{where}: missing column {col!r}")
    pid, prompt, answer = row["id"], row["prompt"], row["answer"]
    if isinstance(pid, bool) or not isinstance(pid, (int, np.integer)) or pid < 0:
        raise DataError(f"{where}: column 'id' must be a non-negative integer, got {pid!r}")
    if not isinstance(prompt, str):
        raise DataError(f"{where}: column 'prompt' must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise DataError(f"{where}: column 'prompt' is empty")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise DataError(f"{where}: column 'answer' must be a string or number, got {type(answer).__name__}")
    if not str(answer).strip():
        raise DataError(f"{where}: column 'answer' is empty")
    meta = json_safe({k: v for k, v in row.items() if k not in REQUIRED})
    return PoolItem(id=int(pid), prompt=prompt, answer=str(answer), metadata=meta)


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
