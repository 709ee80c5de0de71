"""The outcome log and prompt features of a plug-in run (TRL, verl): what `rollwise replay` reads.

A plug-in trains on a dataset of rows, not on a rollwise pool. `rows_pool` turns the rows into a
`PromptPool` (row i is prompt id i, the selector's index), `open_outcome_log` writes its
`features.npz` into the run's directory and returns the `OutcomeLog` (`outcomes.jsonl`) that the
plug-in's `LateSelection` appends every observed generation to (kind `train`; docs/metrics.md has the
format). Replay then reads the directory as it reads a `rollwise train` run:

    rollwise replay OUTPUT_DIR --predictor beta irt
"""

from __future__ import annotations

from pathlib import Path

from rollwise.data.pool import PoolItem, PromptPool
from rollwise.integrations.rewards import metadata_dict
from rollwise.predict.features import FEATURES_FILE, build_features
from rollwise.predict.outcomes import OutcomeLog

OUTCOMES_FILE = "outcomes.jsonl"


def column(dataset, name: str) -> list:
    """One column of a map-style dataset: a Hugging Face Dataset's column, else each row's value (None if absent)."""
    names = getattr(dataset, "column_names", None)
    if isinstance(names, (list, tuple)):
        return list(dataset[name]) if name in names else [None] * len(dataset)
    return [row.get(name) if isinstance(row, dict) else None for row in (dataset[i] for i in range(len(dataset)))]


def rows_pool(prompts: list[str], answers: list, metadata: list, task: str) -> PromptPool:
    """A pool of the dataset's rows in order (ids 0..n-1): the prompt text, reference and metadata of each."""
    items = [PoolItem(i, prompt, "" if answer is None else str(answer), metadata_dict(meta))
             for i, (prompt, answer, meta) in enumerate(zip(prompts, answers, metadata, strict=True))]
    return PromptPool(items, task)


def open_outcome_log(out_dir: str | Path, pool: PromptPool) -> OutcomeLog:
    """Write the pool's features.npz into `out_dir` and return the outcome log beside it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build_features(pool).save(out / FEATURES_FILE)
    return OutcomeLog(out / OUTCOMES_FILE, pool_size=len(pool))
