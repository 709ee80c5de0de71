"""Atomic checkpoints: a kill at any moment leaves the previous good checkpoint in place.

A checkpoint is one file `checkpoints/step-NNNNNN.pt` written as `*.tmp`, flushed to disk and then
renamed over its final name (rename is atomic on POSIX), so a reader sees either nothing or the
whole file. Resume picks the newest checkpoint that loads; older ones beyond `keep` are deleted
only after a newer one is safely in place. A write that fails removes its temporary file and says
how much space it needed; a resume that finds no readable checkpoint names every file and why it failed.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
from pathlib import Path

import torch

PATTERN = re.compile(r"step-(\d{6,})\.pt$")


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    found = []
    directory = checkpoint_dir(out_dir)
    if directory.is_dir():
        for path in directory.iterdir():
            match = PATTERN.search(path.name)
            if match:
                found.append((int(match.group(1)), path))
    return sorted(found)


class CheckpointError(RuntimeError):
    """No checkpoint could be written or read; the message says which files and why."""


def atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CheckpointError(f"could not write {path}: {exc}; {_space_report(obj, path)}") from exc
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _space_report(obj, path: Path) -> str:
    """How much space the write needed against what is free (measured only after a failure)."""
    try:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        needed = buffer.tell()
        free = shutil.disk_usage(path.parent).free
    except Exception:  # noqa: BLE001 - the report must not hide the original error
        return "free some space or choose another out_dir"
    return (f"the checkpoint needs {needed / 2**20:.1f} MiB and {free / 2**20:.1f} MiB are free in {path.parent}; "
            "free some space or choose another out_dir (the previous checkpoint is intact)")


def save_checkpoint(out_dir: str | Path, step: int, state: dict, keep: int = 2) -> Path:
    if keep < 1:
        raise ValueError(f"keep={keep}: at least one checkpoint must be kept")
    directory = checkpoint_dir(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{step:06d}.pt"
    atomic_torch_save(state, path)
    for _, old in list_checkpoints(out_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest_checkpoint(out_dir: str | Path) -> dict | None:
    """The newest checkpoint that loads, or None when there is none.

    Damaged newer files are skipped with a message (disk full, bit rot); when files exist but none
    loads, CheckpointError names each file and why it failed.
    """
    failures = []
    for step, path in reversed(list_checkpoints(out_dir)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            if not isinstance(state, dict) or "step" not in state:
                raise ValueError("not a rollwise checkpoint (no step)")
        except Exception as exc:  # noqa: BLE001 - fall back to an older one, and report every failure
            failures.append(f"{path.name}: {type(exc).__name__}: {exc}")
            print(f"rollwise: checkpoint {path} is unreadable ({exc}); trying an older one", file=sys.stderr)
            continue
        return state
    if failures:
        raise CheckpointError(f"no readable checkpoint in {checkpoint_dir(out_dir)}:\n  " + "\n  ".join(failures))
    return None


def atomic_json(obj, path: Path) -> None:
    """Write JSON so that readers never see a half-written file."""
    import json

    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)
