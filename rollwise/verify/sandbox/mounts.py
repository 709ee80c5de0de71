"""The sandbox's own view of the file system: a minimal /dev, and Python reachable without capabilities.

`build_view` runs in the namespace creator (`rollwise.verify.sandbox.policy`) once it is in its new mount
namespace and before it gives up the trainer's identity, so it can still open what the trainer can;
the mounts it makes are the template's. Then the template makes every mount read-only, nosuid and
nodev (`rollwise.verify.sandbox.confine`), except the three device nodes below.

- **/dev** becomes a small tmpfs with only `null`, `zero` and `urandom`, bind mounts of the host's
  nodes: no terminal (/dev/pts, /dev/tty, /dev/console, /dev/vcs*), no disk, no /dev/shm. With
  every other mount nodev, a device node found anywhere else cannot be opened either.
- **Import paths the sandbox uid cannot reach** (a Python under /root, mode 0700, when the trainer is
  root and the sandbox runs as uid 65534): each directory the uid cannot search is covered by a
  tmpfs, and only its entries on the way to an import path are bind-mounted back. Lazy imports in a
  scorer work with no capability at all, and the rest of that directory (/root/.ssh) is not there.

Sources are opened (O_PATH) before anything covers them and bind-mounted through /proc/self/fd, so
nested unreadable directories work too.
"""

from __future__ import annotations

import os
import stat
import sys

from rollwise.verify.sandbox import linux

DEVICES = ("null", "urandom", "zero")


def import_roots() -> list[str]:
    """Every place this process imports from: sys.path, the prefixes and loaded top-level packages."""
    roots = [p for p in sys.path if p] + [sys.prefix, sys.base_prefix, sys.exec_prefix]
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if "." not in name and isinstance(file, str):
            roots.append(os.path.dirname(file))
    seen, out = set(), []
    for root in roots:
        path = os.path.realpath(root)
        if path not in seen and os.path.exists(path):
            seen.add(path)
            out.append(path)
    return out


def _allows(path: str, uid: int, gid: int, bits: int) -> bool:
    """Whether a process of uid/gid with no groups and no capability has `bits` (an 'other' mask) on path."""
    info = os.stat(path)
    if info.st_uid == uid:
        bits <<= 6
    elif info.st_gid == gid:
        bits <<= 3
    return info.st_mode & bits == bits


def reach_plan(uid: int, gid: int, roots: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """({directory uid cannot search: its entries on the way to a root}, roots that stay unreadable).

    A root that the uid cannot read itself stays unreadable (a tmpfs can only bridge the way to it).
    """
    plan: dict[str, list[str]] = {}
    unreadable = []
    for root in roots:
        if not _allows(root, uid, gid, stat.S_IROTH | (stat.S_IXOTH if os.path.isdir(root) else 0)):
            unreadable.append(root)
            continue
        parts = root.strip("/").split("/")
        for depth in range(1, len(parts)):  # each ancestor below / (outermost first) and its entry on the way
            directory, entry = "/" + "/".join(parts[:depth]), "/" + "/".join(parts[:depth + 1])
            if not _allows(directory, uid, gid, stat.S_IXOTH) and entry not in plan.setdefault(directory, []):
                plan[directory].append(entry)
    return {d: entries for d, entries in plan.items() if entries}, unreadable


def open_sources(plan: dict[str, list[str]], notes: list) -> dict[str, int]:
    """O_PATH descriptors of the device nodes and every bridged entry, opened while the caller can still
    reach them (the trainer's identity): path -> fd. `build_view` closes them."""
    paths = [f"/dev/{name}" for name in DEVICES] + [e for entries in plan.values() for e in entries]
    sources = {}
    for path in paths:
        try:
            sources[path] = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as exc:
            notes.append(f"{path}: {exc.strerror}")
    return sources


def build_view(plan: dict[str, list[str]], sources: dict[str, int], notes: list) -> None:
    """Private propagation, the minimal /dev, then the bridges to the import paths (see the module doc).

    Runs as the sandbox uid (files created in a tmpfs of a user namespace need a mapped owner) with
    the capabilities of its user namespace.
    """
    try:
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)  # nothing below reaches the host
        _private_dev(sources, notes)
        for directory in sorted(plan, key=lambda d: d.count("/")):  # outer directories first
            _bridge(directory, plan[directory], sources, notes)
    except OSError as exc:
        notes.append(f"private mounts: {exc.strerror}; host devices stay visible")
    finally:
        for fd in sources.values():
            os.close(fd)


def _bind(source_fd: int, target: str, is_dir: bool) -> None:
    """Bind-mount what source_fd names onto a new empty directory or file `target` (in a tmpfs)."""
    if is_dir:
        os.mkdir(target, 0o755)
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
    linux.mount(f"/proc/self/fd/{source_fd}", target, None, linux.MS_BIND | linux.MS_REC)


def _private_dev(sources: dict[str, int], notes: list) -> None:
    try:
        linux.mount("tmpfs", "/dev", "tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64")
        for name in DEVICES:
            _bind(sources[f"/dev/{name}"], f"/dev/{name}", is_dir=False)
    except (OSError, KeyError) as exc:
        notes.append(f"private /dev: {exc}; host devices stay visible (nodev still applies elsewhere)")


def _bridge(directory: str, entries: list[str], sources: dict[str, int], notes: list) -> None:
    """Cover `directory` with a tmpfs holding only `entries`, each the original bind-mounted back."""
    try:
        linux.mount("tmpfs", directory, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                    "mode=0755,size=64k,nr_inodes=256")
        for entry in entries:
            fd = sources[entry]
            _bind(fd, entry, is_dir=stat.S_ISDIR(os.fstat(fd).st_mode))
    except (OSError, KeyError) as exc:
        notes.append(f"making {directory} passable: {exc}; imports from under it may fail in scorers")


def device_paths() -> set[str]:
    return {f"/dev/{name}" for name in DEVICES}
