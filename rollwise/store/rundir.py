"""Run directories: a new run never destroys an old one, and a resume continues the same run.

- `rollwise train` into a directory that already holds a run (metrics, checkpoints or a summary)
  stops unless `--resume` (continue it) or `--overwrite` (move the old run aside to
  `NAME.old-YYYYmmdd-HHMMSS`, never delete it) is given.
- Nothing is written through a link: an entry rollwise writes that is a symbolic link or not a
  regular file (a directory where a file belongs) is refused by name before anything runs.
- `--resume` needs a readable checkpoint (an error names each file and why it failed) and checks
  that the run is the same run: every configuration field except the ones a resume may change
  (`RESUMABLE_CHANGES`), the pool contents (a content hash) and the model source. The error names
  the field that differs.
"""

from __future__ import annotations

import time
from pathlib import Path

from rollwise.store import checkpoint as ckpt
from rollwise.store import safefiles
from rollwise.data.jsonl import short_repr

# Fields that do not change what the run computes, or only extend it: a resume may change them.
RESUMABLE_CHANGES = frozenset({
    "out_dir", "steps", "progress", "threads", "device", "keep_checkpoints", "checkpoint_every", "eval_every",
    "probe_every", "verify_workers", "verify_timeout", "verify_memory_mb", "verify_batch_budget",
    "verify_breaker_timeouts", "verify_breaker_rate", "gen_batch_size", "gen_share_prefill", "micro_batch",
    "cache_dir", "merge_lora",
})
RUN_FILES = ("metrics.jsonl", "summary.json", "checkpoints")
# Everything rollwise writes in a run directory: checked before anything runs, so that a link or a
# non-regular entry is refused by name instead of written through (rollwise.store.safefiles).
WRITTEN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "run.json", "selector.npz", "wandb_id", "train.log")
WRITTEN_DIRS = ("checkpoints", "tb", "model", "wandb")


class RunDirError(RuntimeError):
    """The run directory does not allow what was asked; the message says what to do."""


def holds_a_run(out: Path) -> bool:
    """True when `out` has a run's outputs (a lone config.yaml, as `rollwise compare` writes first, is not one)."""
    out = Path(out)
    return (out / "metrics.jsonl").exists() or (out / "summary.json").exists() or bool(ckpt.list_checkpoints(out))


def move_aside(out: Path) -> Path:
    """Rename an old run out of the way (never delete a user's run); returns where it went."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = out.with_name(f"{out.name}.old-{stamp}")
    k = 1
    while target.exists():
        target = out.with_name(f"{out.name}.old-{stamp}-{k}")
        k += 1
    out.rename(target)
    return target


def open_run_dir(out: Path, resume: bool, overwrite: bool, log=print) -> dict | None:
    """Prepare `out` for a run; returns the checkpoint to resume from (None for a new run)."""
    out = Path(out)
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite contradict each other: choose one")
    if not overwrite:  # an overwritten run is moved aside whole, links included
        check_entries(out)
    if resume:
        state = ckpt.load_latest_checkpoint(out)  # CheckpointError when files exist but none loads
        if state is None:
            raise RunDirError(f"--resume: no checkpoint in {ckpt.checkpoint_dir(out)}, so there is nothing to "
                              "continue; run without --resume to start (add --overwrite if the directory holds "
                              "an earlier run's files)")
        return state
    if holds_a_run(out):
        if not overwrite:
            raise RunDirError(f"{out} already holds a run (metrics, checkpoints or summary): continue it with "
                              "--resume, choose another --out-dir, or pass --overwrite to move the old run aside")
        log(f"rollwise: moved the earlier run in {out} to {move_aside(out)}")
    out.mkdir(parents=True, exist_ok=True)
    return None


def check_entries(out: Path) -> None:
    """UnsafeEntryError naming the first entry rollwise would write that is a link or of the wrong kind."""
    for name in WRITTEN_FILES:
        safefiles.check_entry(out / name)
    for name in WRITTEN_DIRS:
        safefiles.check_entry(out / name, directory=True)


def check_same_run(saved: dict, config: dict, identity: dict) -> None:
    """Refuse to resume a checkpoint of a different run; the error names the first difference."""
    saved_config = saved.get("config", {})
    for name in sorted(set(saved_config) | set(config)):
        if name in RESUMABLE_CHANGES:
            continue
        if name not in saved_config or name not in config:
            continue  # a field added or removed by a rollwise upgrade: its default applies
        if saved_config[name] != config[name]:
            raise RunDirError(f"cannot resume: config field {name} is {short_repr(config[name])} now but "
                              f"{short_repr(saved_config[name])} in the checkpoint; resume with the saved value "
                              "(see config.yaml) or start a new run directory")
    for name, value in identity.items():
        before = saved.get("identity", {}).get(name)
        if name == "model" and before is not None and Path(before).name == value:
            continue  # a checkpoint from before tiny models were named by their key recorded the cache path
        if before is not None and before != value:
            raise RunDirError(f"cannot resume: the {name} differs from the checkpoint's ({short_repr(before)} then, "
                              f"{short_repr(value)} now); "
                              "the data or model changed on disk: start a new run directory")
