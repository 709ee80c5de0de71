"""Thin ctypes wrappers of the Linux calls the sandbox needs and Python 3.11 lacks.

Each raises OSError with the errno and the call's name, so that the sandbox can record which
protection the kernel refused and go on without it.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
NAMESPACE_FLAGS = {"user": CLONE_NEWUSER, "mount": CLONE_NEWNS, "pid": CLONE_NEWPID, "network": CLONE_NEWNET,
                   "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS, "cgroup": CLONE_NEWCGROUP}
NAMESPACE_FILES = {"user": "user", "mount": "mnt", "pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts",
                   "cgroup": "cgroup"}

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 0x20, 0x400, 0x800, 0x1000
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 0x4000, 0x40000, 0x200000, 0x1000000
MOUNT_OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                      "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}

PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_KEEPCAPS = 1, 2, 4, 8
PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_SET_NO_NEW_PRIVS = 24, 47, 4, 38
_SYS_MOUNT_SETATTR, _AT_FDCWD, _AT_RECURSIVE = 442, -100, 0x8000
_CAPABILITY_VERSION_3 = 0x20080522

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, call: str) -> int:
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, f"{call}: {os.strerror(code)}")
    return result


def unshare(flags: int) -> None:
    _check(libc().unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    _check(libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4


def mount_setattr(path: str, attr_set: int, attr_clr: int = 0, recursive: bool = True) -> None:
    """Set and clear MOUNT_ATTR_* flags on the mount at `path` (and every mount under it when recursive).

    Linux 5.12+; x86_64 and aarch64 share the number.
    """
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    _check(libc().syscall(ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(_AT_FDCWD), path.encode(),
                          ctypes.c_uint(_AT_RECURSIVE if recursive else 0), ctypes.byref(attr),
                          ctypes.c_size_t(ctypes.sizeof(attr))), f"mount_setattr {path}")


def prctl(option: int, arg: int = 0) -> int:
    return _check(libc().prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                               ctypes.c_ulong(0)), f"prctl({option})")


def parent_death_signal() -> int:
    value = ctypes.c_int(0)
    _check(libc().prctl(ctypes.c_int(PR_GET_PDEATHSIG), ctypes.byref(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                        ctypes.c_ulong(0)), "prctl(PR_GET_PDEATHSIG)")
    return value.value


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _capability_sets() -> "ctypes.Array":
    data = (_CapData * 2)()
    _check(libc().capget(ctypes.byref(_CapHeader(_CAPABILITY_VERSION_3, 0)), data), "capget")
    return data


def permitted_capabilities() -> int:
    data = _capability_sets()
    return data[0].permitted | data[1].permitted << 32


def set_capabilities(mask: int) -> None:
    """Effective and permitted sets = mask (within what is permitted now); inheritable empty."""
    data = (_CapData * 2)()
    for half in (0, 1):
        bits = (mask >> (32 * half)) & 0xFFFFFFFF
        data[half].effective = data[half].permitted = bits
    _check(libc().capset(ctypes.byref(_CapHeader(_CAPABILITY_VERSION_3, 0)), data), "capset")


def drop_capabilities(keep: int = 0) -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable sets, except `keep` (a mask)."""
    drop_bounding_set(keep)
    libc().prctl(ctypes.c_int(PR_CAP_AMBIENT), ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), ctypes.c_ulong(0),
                 ctypes.c_ulong(0), ctypes.c_ulong(0))
    set_capabilities(keep)


def drop_bounding_set(keep: int = 0) -> None:
    """Capabilities outside `keep` can never come back, not even through exec."""
    for cap in range(64):
        if not keep >> cap & 1:
            try:
                prctl(PR_CAPBSET_DROP, cap)
            except OSError:  # EINVAL past the kernel's last capability; EPERM without CAP_SETPCAP
                pass


def memset(address: int, size: int) -> None:
    ctypes.memset(address, 0, size)
