"""Atomic checkpoints that cannot carry code: a kill at any moment leaves the previous good one in place.

A checkpoint is one file `checkpoints/step-NNNNNN.safetensors`: tensors in safetensors and the rest
of the state as JSON in its metadata (`rollwise.store.safestate`), never a pickle, because a pickle runs
code when it is loaded and a run directory may come from elsewhere. It is written as `*.tmp`
without following links (`rollwise.store.safefiles`), flushed to disk and renamed over its final name
(rename is atomic on POSIX), so a reader sees either nothing or the whole file. Resume picks the
newest checkpoint that loads; older ones beyond `keep` are deleted only after a newer one is safely
in place. A write that fails removes its temporary file and says how much space it needed; a resume
that finds no readable checkpoint names every file and why it failed.

Checkpoints of rollwise before this format (`step-NNNNNN.pt`, pickles) are refused, never
unpickled: `rollwise convert-checkpoint RUN_DIR` converts them, for files the user trusts.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

from rollwise.store import safefiles, safestate

PATTERN = re.compile(r"step-(\d{6,})\.(safetensors|pt)$")
SUFFIX = ".safetensors"


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint file, old format included, oldest first."""
    found = []
    directory = checkpoint_dir(out_dir)
    if directory.is_dir() and safefiles.check_entry(directory, directory=True):
        for path in directory.iterdir():
            match = PATTERN.search(path.name)
            if match:
                found.append((int(match.group(1)), path))
    return sorted(found, key=lambda found_: (found_[0], found_[1].suffix == SUFFIX))


class CheckpointError(RuntimeError):
    """No checkpoint could be written or read; the message says which files and why."""


def old_format_message(path: Path) -> str:
    return (f"{path} is an old-format checkpoint (a pickle, which can run code when loaded): rollwise no longer "
            f"loads those. If you made this file or trust where it came from, convert it with `rollwise "
            f"convert-checkpoint {path.parent.parent}` (or `python -m rollwise.store.convert ...`), then "
            "resume; otherwise start a new run directory")


def write_state(state: dict, path: Path) -> None:
    """Encode and write one checkpoint atomically and durably; CheckpointError with the space needed."""
    data = safestate.encode(state)
    try:
        safefiles.write_atomic(path, data, durable=True)
    except OSError as exc:
        raise CheckpointError(f"could not write {path}: {exc}; {_space_report(len(data), path)}") from exc


def read_checkpoint(path: str | Path) -> dict:
    """The state in one checkpoint file (no code runs); CheckpointError for an old-format one."""
    path = Path(path)
    if path.suffix == ".pt":
        raise CheckpointError(old_format_message(path))
    state = safestate.decode(safefiles.read_bytes(path))
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError("not a rollwise checkpoint (no step)")
    return state


def _space_report(needed: int, path: Path) -> str:
    """How much space the write needed against what is free (measured only after a failure)."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return "free some space or choose another out_dir"
    return (f"the checkpoint needs {needed / 2**20:.1f} MiB and {free / 2**20:.1f} MiB are free in {path.parent}; "
            "free some space or choose another out_dir (the previous checkpoint is intact)")


def save_checkpoint(out_dir: str | Path, step: int, state: dict, keep: int = 2) -> Path:
    if keep < 1:
        raise ValueError(f"keep={keep}: at least one checkpoint must be kept")
    directory = safefiles.safe_dir(checkpoint_dir(out_dir))
    path = directory / f"step-{step:06d}{SUFFIX}"
    write_state(state, path)
    for _, old in [c for c in list_checkpoints(out_dir) if c[1].suffix == SUFFIX][:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest_checkpoint(out_dir: str | Path) -> dict | None:
    """The newest checkpoint that loads, or None when there is none.

    Damaged newer files are skipped with a message (disk full, bit rot); when files exist but none
    loads, CheckpointError names each file and why it failed. A newest checkpoint in the old pickle
    format is refused at once (see `old_format_message`).
    """
    failures = []
    for step, path in reversed(list_checkpoints(out_dir)):
        if path.suffix == ".pt":
            raise CheckpointError(old_format_message(path))
        try:
            return read_checkpoint(path)
        except (OSError, ValueError) as exc:  # damaged or refused: fall back to an older one, report each
            failures.append(f"{path.name}: {type(exc).__name__}: {exc}")
            print(f"rollwise: checkpoint {path} is unreadable ({exc}); trying an older one", file=sys.stderr)
    if failures:
        raise CheckpointError(f"no readable checkpoint in {checkpoint_dir(out_dir)}:\n  " + "\n  ".join(failures))
    return None


def atomic_json(obj, path: Path) -> None:
    """Write JSON so that readers never see a half-written file (and never through a link)."""
    safefiles.write_atomic(path, json.dumps(obj, indent=1, default=float).encode())
