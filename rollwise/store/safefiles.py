"""Files in a run directory, written without following links.

A run directory may come from elsewhere (a downloaded run, a shared disk, a colleague's copy). An
entry in it that is a symbolic link would make rollwise write, create or truncate a file wherever it
points: a `config.yaml` link overwrote its target, a dangling `metrics.jsonl` link created a file,
and the metrics truncation of `--resume` emptied a link's target. Every file rollwise writes or
truncates in a run directory goes through this module:

- the final component is opened with O_NOFOLLOW, and an existing entry that is a link or not a
  regular file (a directory, a FIFO, a device) is refused with UnsafeEntryError naming it;
- a file rollwise appends to or truncates must have exactly one link (a hard link to a file outside
  would otherwise be changed through it);
- whole files are replaced atomically: a fresh temporary file (O_CREAT | O_EXCL | O_NOFOLLOW),
  flushed, then renamed over the name (a rename replaces the entry, never writes through it);
- a sub-directory rollwise writes into (checkpoints, tb, model, wandb) must be a real directory.

The threat is a directory prepared in advance, not a process racing rollwise while it runs.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "link").symlink_to("/etc/hostname")
    >>> write_atomic(d / "link", b"x")
    Traceback (most recent call last):
    ...
    rollwise.store.safefiles.UnsafeEntryError: .../link is a symbolic link; rollwise writes only regular files inside a run directory: remove it (or copy the file it points to in its place)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeEntryError(ValueError):
    """An entry of a run directory is a link or not what rollwise writes there; the message names it."""


def _refuse(path: Path, what: str) -> UnsafeEntryError:
    return UnsafeEntryError(f"{path} is {what}; rollwise writes only regular files inside a run directory: remove "
                            "it (or copy the file it points to in its place)")


def check_entry(path: str | Path, directory: bool = False) -> bool:
    """True when `path` exists as a regular file (a real directory with `directory`), False when absent;
    UnsafeEntryError when it is a link or anything else."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(path, "a symbolic link")
    if directory and not stat.S_ISDIR(info.st_mode):
        raise _refuse(path, "not a directory")
    if not directory and not stat.S_ISREG(info.st_mode):
        raise _refuse(path, "not a regular file")
    return True


def safe_dir(path: str | Path) -> Path:
    """`path` as a real directory (created with its parents when absent); never a link."""
    path = Path(path)
    if not check_entry(path, directory=True):
        path.mkdir(parents=True, exist_ok=True)
        check_entry(path, directory=True)
    return path


def _checked_fd(fd: int, path: Path) -> int:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise _refuse(path, "not a regular file" if not stat.S_ISREG(info.st_mode) else "a hard link to another file")
    return fd


def _open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    try:
        return os.open(path, flags | _NOFOLLOW, mode)
    except OSError as exc:
        if os.path.islink(path):
            raise _refuse(path, "a symbolic link") from None
        raise exc


def write_atomic(path: str | Path, data: bytes, durable: bool = False) -> None:
    """Replace `path` by a file holding `data`: readers see the old file or the new one, never a part.

    durable: fsync the file and the directory (checkpoints); otherwise the data is only flushed.
    """
    path = Path(path)
    check_entry(path)
    tmp = path.with_name(path.name + ".tmp")
    if os.path.lexists(tmp):  # a stale temporary file, or a planted link: unlinking never follows it
        os.unlink(tmp)
    fd = _open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)


def open_append(path: str | Path, text: bool = True):
    """A file object appending to `path` (created when absent), which must be a regular file with one link."""
    path = Path(path)
    fd = _checked_fd(_open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), path)
    return os.fdopen(fd, "a" if text else "ab")


def truncate(path: str | Path, size: int) -> None:
    """Cut `path` (a regular file with one link) to `size` bytes; nothing when it does not exist."""
    path = Path(path)
    if not check_entry(path):
        return
    fd = _checked_fd(_open_nofollow(path, os.O_WRONLY), path)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def read_bytes(path: str | Path, limit: int | None = None) -> bytes:
    """The contents of `path`, a regular file reached without following a link (at most `limit` bytes
    plus one, so that the caller can tell a file over its bound)."""
    path = Path(path)
    fd = _open_nofollow(path, os.O_RDONLY)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _refuse(path, "not a regular file")
    with os.fdopen(fd, "rb") as handle:
        return handle.read() if limit is None else handle.read(limit + 1)


def size(path: str | Path) -> int:
    """Size of `path` in bytes (0 when absent), refusing links and non-regular entries."""
    return os.lstat(path).st_size if check_entry(path) else 0
