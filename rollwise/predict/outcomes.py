"""The outcome log: every verified group of a run, per step, for predictors and `rollwise replay`.

One JSON object per line in `outcomes.jsonl` of the run directory (appendable, cut back exactly on
`--resume` to the byte offset the checkpoint recorded, like metrics.jsonl):

    {"format": "rollwise-outcomes", "version": 1, "pool_size": 2000, "eval_size": 500}     first line
    {"step": 3, "kind": "train", "ids": [17, 4], "successes": [2, 0], "trials": [8, 8]}    one per batch

`ids` are positions in the training pool (the held-out set's positions for kind `eval`);
`successes` counts verified-correct answers among `trials` scored ones. Kinds:

- `train`: whole completions of a training step (a group's main rollout);
- `presample`: an allocator's estimation pass (GVM's pre-samples), whole completions;
- `partial`: completions that continue a cached prefix (RPO): they measure the prefix's success,
  not the prompt's, so predictors of the prompt's own rate read them apart;
- `probe`: the unbiased uniform probe; `prefilter`: the offline filter's up-front estimate;
- `eval`: held-out evaluation at the sampling temperature (ids index the held-out set).

Reading is strict: a truncated or malformed line, an unknown kind, an index outside the pool or
successes above trials is a `OutcomeLogError` naming the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rollwise.store import safefiles

FORMAT, VERSION = "rollwise-outcomes", 1
KINDS = ("train", "presample", "partial", "probe", "prefilter", "eval")
POOL_KINDS = tuple(k for k in KINDS if k != "eval")  # kinds whose ids index the training pool


class OutcomeLogError(ValueError):
    """An outcome log that cannot be read as written; the message names the file and line."""


@dataclass(frozen=True)
class Outcomes:
    """One logged batch of groups: pool positions, verified successes and scored trials per group."""

    step: int
    kind: str
    ids: np.ndarray
    successes: np.ndarray
    trials: np.ndarray


class OutcomeLog:
    """Appends outcome rows to a run's log; `offset` / `truncate_to` make resume exact.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "outcomes.jsonl"
    >>> log = OutcomeLog(path, pool_size=4, eval_size=2)
    >>> log.write(1, "train", [2, 0], [1, 8], [8, 8])
    >>> [(o.step, o.kind, o.ids.tolist()) for o in read_outcomes(path)]
    [(1, 'train', [2, 0])]
    """

    def __init__(self, path: str | Path, pool_size: int, eval_size: int = 0) -> None:
        self.path = Path(path)
        self.header = {"format": FORMAT, "version": VERSION, "pool_size": int(pool_size), "eval_size": int(eval_size)}

    def write(self, step: int, kind: str, ids, successes, trials) -> None:
        if kind not in KINDS:
            raise ValueError(f"outcome kind {kind!r}: expected one of {', '.join(KINDS)}")
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return
        self._append({"step": int(step), "kind": kind, "ids": ids.tolist(),
                      "successes": np.asarray(successes, dtype=np.int64).tolist(),
                      "trials": np.asarray(trials, dtype=np.int64).tolist()})

    def _append(self, row: dict) -> None:
        lines = [row] if self.offset() else [self.header, row]  # the header goes first, with the first row
        with safefiles.open_append(self.path) as handle:  # never through a link in the run directory
            handle.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lines))

    def offset(self) -> int:
        return safefiles.size(self.path)

    def truncate_to(self, offset: int) -> None:
        """Cut the log back to a checkpoint's offset; a shorter log is an error (it was replaced)."""
        size = self.offset()
        if size < offset:
            raise ValueError(f"{self.path} has {size} bytes but the checkpoint recorded {offset}: the outcome log "
                             "was truncated or replaced after the checkpoint; restore it, or start a new run")
        if size > offset:
            safefiles.truncate(self.path, offset)  # never through a link: it would cut the link's target


def read_header(path: str | Path) -> dict:
    """The first line of an outcome log (format, version, pool and held-out sizes)."""
    with open(path) as handle:
        first = handle.readline()
    return _header(Path(path), first)


def read_outcomes(path: str | Path, kinds: tuple[str, ...] | None = None) -> list[Outcomes]:
    """Every row of an outcome log, validated; only `kinds` when given."""
    path = Path(path)
    lines = path.read_text().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        raise OutcomeLogError(f"{path}:{len(lines)}: the last line is not terminated (a truncated write?)")
    if not lines:
        raise OutcomeLogError(f"{path}: empty file, expected a {FORMAT} header")
    header = _header(path, lines[0])
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        row = _row(path, number, line, header)
        if kinds is None or row.kind in kinds:
            rows.append(row)
    return rows


def _header(path: Path, line: str) -> dict:
    try:
        header = json.loads(line)
    except json.JSONDecodeError as exc:
        raise OutcomeLogError(f"{path}:1: not a {FORMAT} header ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise OutcomeLogError(f"{path}:1: not a {FORMAT} header")
    if header.get("version") != VERSION:
        raise OutcomeLogError(f"{path}:1: format version {header.get('version')!r}, this rollwise reads {VERSION}")
    for key in ("pool_size", "eval_size"):
        if not isinstance(header.get(key), int) or isinstance(header.get(key), bool) or header[key] < 0:
            raise OutcomeLogError(f"{path}:1: header {key} must be a non-negative integer")
    return header


def _row(path: Path, number: int, line: str, header: dict) -> Outcomes:
    where = f"{path}:{number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise OutcomeLogError(f"{where}: not a JSON object ({exc})") from None
    if not isinstance(row, dict) or set(row) != {"step", "kind", "ids", "successes", "trials"}:
        raise OutcomeLogError(f"{where}: expected the keys step, kind, ids, successes, trials")
    if row["kind"] not in KINDS:
        raise OutcomeLogError(f"{where}: unknown kind {row['kind']!r} (expected one of {', '.join(KINDS)})")
    if not isinstance(row["step"], int) or isinstance(row["step"], bool) or row["step"] < 0:
        raise OutcomeLogError(f"{where}: step must be a non-negative integer")
    ids, successes, trials = (_int_array(where, row, key) for key in ("ids", "successes", "trials"))
    if not ids.size == successes.size == trials.size:
        raise OutcomeLogError(f"{where}: ids, successes and trials have different lengths")
    size = header["eval_size"] if row["kind"] == "eval" else header["pool_size"]
    bad = ids[(ids < 0) | (ids >= size)]
    if bad.size:
        raise OutcomeLogError(f"{where}: index {int(bad[0])} is outside the {'held-out set' if row['kind'] == 'eval' else 'pool'} "
                              f"of {size} prompts")
    if (successes < 0).any() or (successes > trials).any():
        position = int(np.flatnonzero((successes < 0) | (successes > trials))[0])
        raise OutcomeLogError(f"{where}: index {int(ids[position])} has successes {int(successes[position])} outside "
                              f"0..trials ({int(trials[position])})")
    return Outcomes(row["step"], row["kind"], ids, successes, trials)


def _int_array(where: str, row: dict, key: str) -> np.ndarray:
    values = row[key]
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise OutcomeLogError(f"{where}: {key} must be a list of integers")
    try:
        return np.asarray(values, dtype=np.int64)
    except OverflowError:
        raise OutcomeLogError(f"{where}: {key} holds an integer outside int64") from None
