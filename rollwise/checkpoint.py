"""Atomic checkpoints: a kill at any moment leaves the previous good checkpoint in place.

A checkpoint is one file `checkpoints/step-NNNNNN.pt` written as `*.tmp`, flushed to disk and then
renamed over its final name (rename is atomic on POSIX), so a reader sees either nothing or the
whole file. Resume picks the newest checkpoint that loads; older ones beyond `keep` are deleted
only after a newer one is safely in place.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
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


def atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def save_checkpoint(out_dir: str | Path, step: int, state: dict, keep: int = 2) -> Path:
    directory = checkpoint_dir(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{step:06d}.pt"
    atomic_torch_save(state, path)
    for _, old in list_checkpoints(out_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest_checkpoint(out_dir: str | Path) -> dict | None:
    """The newest checkpoint that loads, or None when there is none."""
    for step, path in reversed(list_checkpoints(out_dir)):
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a damaged file (disk full, bit rot): fall back to an older one
            print(f"rollwise: checkpoint {path} is unreadable ({exc}); trying an older one")
    return None


def rng_state(rng: np.random.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "python": random.getstate()}


def restore_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


def atomic_json(obj, path: Path) -> None:
    """Write JSON so that readers never see a half-written file."""
    import json

    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)
