"""A hand-written seccomp-BPF filter for verifier workers (Linux x86_64 and aarch64, no dependency).

Two filters stack. `template_rules()` goes on the pre-imported template process: it may fork
(one child per answer) but never execute programs, open sockets, trace or signal other processes'
resources, create namespaces or mounts, create anonymous memory files, modify any file, change
scheduling state (priority, policy, affinity, I/O priority) or use an ioctl outside a short
allow-list (no terminal control at all).
`answer_rules(pid)` is added by each answer's child: no process creation at all, signals only
to itself, no raising of resource limits, no System V IPC.

Actions: calls no honest scorer makes kill the process (the guard sees SIGSYS and charges the
answer "blocked"); calls a library might try in passing (opening a file for writing, setrlimit)
fail with an errno. Unknown, newer system calls fail with ENOSYS. A denylist is used rather than
an allowlist because Python, numpy and sympy use a long and version-dependent list of calls.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import struct
import sys
from dataclasses import dataclass

# seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little-endian only)
_NR, _ARCH = 0, 4
_LD, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
KILL = 0x80000000  # SECCOMP_RET_KILL_PROCESS (older kernels read it as kill-thread: ours are single-threaded)
ALLOW = 0x7FFF0000


def errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


DENY_WRITE, DENY_SET, NOSYS = errno_action(errno.EACCES), errno_action(errno.EPERM), errno_action(errno.ENOSYS)
NOT_A_TERMINAL = errno_action(errno.ENOTTY)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
NEW_NAMESPACES = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_THREAD = 0x00010000
TERMINAL_INJECTION = (0x5412, 0x541C)  # TIOCSTI, TIOCLINUX: kill, as before the allow-list existed
# ioctl is an allow-list: on a terminal reached somehow, every other request (TCSETS turning echo
# off, TIOCSETD setting a null line discipline, TIOCSCTTY) fails with ENOTTY, which is also what
# isatty() and libraries expect from a descriptor that is no terminal. The kernel reads the request
# as a 32-bit int, so comparing the low 32 bits is exact.
ALLOWED_IOCTLS = (0x541B, 0x5451, 0x5450)  # FIONREAD, FIOCLEX, FIONCLEX (os.set_inheritable uses the last two)

# name: (x86_64, aarch64); None where the architecture lacks the call.
SYSCALLS = {
    "open": (2, None), "openat": (257, 56), "creat": (85, None), "openat2": (437, 437),
    "clone": (56, 220), "clone3": (435, 435), "fork": (57, None), "vfork": (58, None),
    "execve": (59, 221), "execveat": (322, 281),
    "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131), "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240), "pidfd_send_signal": (424, 424), "pidfd_open": (434, 434),
    "pidfd_getfd": (438, 438), "ptrace": (101, 117), "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271), "kcmp": (312, 272), "process_madvise": (440, 440),
    "process_mrelease": (448, 448), "migrate_pages": (256, 238), "move_pages": (279, 239),
    "prlimit64": (302, 261), "setrlimit": (160, 164), "memfd_create": (319, 279), "memfd_secret": (447, 447),
    "socket": (41, 198), "socketpair": (53, 199), "ioctl": (16, 29),
    "setpriority": (141, 140), "sched_setparam": (142, 118), "sched_setscheduler": (144, 119),
    "sched_setaffinity": (203, 122), "sched_setattr": (314, 274), "ioprio_set": (251, 30),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "unshare": (272, 97), "setns": (308, 268), "mount_setattr": (442, 442), "open_tree": (428, 428),
    "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432),
    "fspick": (433, 433), "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218), "kexec_load": (246, 104),
    "kexec_file_load": (320, 294), "init_module": (175, 105), "finit_module": (313, 273),
    "delete_module": (176, 106), "reboot": (169, 142), "swapon": (167, 224), "swapoff": (168, 225),
    "syslog": (103, 116), "acct": (163, 89), "quotactl": (179, 60), "quotactl_fd": (443, 443),
    "name_to_handle_at": (303, 264), "open_by_handle_at": (304, 265), "fanotify_init": (300, 262),
    "sethostname": (170, 161), "setdomainname": (171, 162), "vhangup": (153, 58), "uselib": (134, None),
    "iopl": (172, None), "ioperm": (173, None), "lookup_dcookie": (212, 18),
    "shmget": (29, 194), "msgget": (68, 186), "semget": (64, 190), "mq_open": (240, 180),
    "mkdir": (83, None), "mkdirat": (258, 34), "rmdir": (84, None), "unlink": (87, None),
    "unlinkat": (263, 35), "rename": (82, None), "renameat": (264, 38), "renameat2": (316, 276),
    "link": (86, None), "linkat": (265, 37), "symlink": (88, None), "symlinkat": (266, 36),
    "chmod": (90, None), "fchmod": (91, 52), "fchmodat": (268, 53), "fchmodat2": (452, 452),
    "chown": (92, None), "fchown": (93, 55), "lchown": (94, None), "fchownat": (260, 54),
    "truncate": (76, 45), "ftruncate": (77, 46), "mknod": (133, None), "mknodat": (259, 33),
    "utime": (132, None), "utimes": (235, None), "utimensat": (280, 88), "futimesat": (261, None),
    "setxattr": (188, 5), "lsetxattr": (189, 6), "fsetxattr": (190, 7), "removexattr": (197, 14),
    "lremovexattr": (198, 15), "fremovexattr": (199, 16),
}
# The highest system call whose meaning was reviewed for this list (Linux 6.10, mseal); newer ones fail.
LAST_REVIEWED = 462
ARCHES = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}

_NEVER = ("execve", "execveat", "socket", "socketpair", "ptrace", "process_vm_readv", "process_vm_writev",
          "kcmp", "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "process_madvise", "process_mrelease",
          "migrate_pages", "move_pages", "memfd_create", "memfd_secret", "mount", "umount2", "pivot_root",
          "chroot", "unshare", "setns", "mount_setattr", "open_tree", "move_mount", "fsopen", "fsconfig",
          "fsmount", "fspick", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
          "io_uring_register", "keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load",
          "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "syslog", "acct",
          "quotactl", "quotactl_fd", "name_to_handle_at", "open_by_handle_at", "fanotify_init",
          "sethostname", "setdomainname", "vhangup", "uselib", "iopl", "ioperm", "lookup_dcookie")
_MODIFY_FILES = ("creat", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
                 "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown",
                 "fchown", "lchown", "fchownat", "truncate", "ftruncate", "mknod", "mknodat", "utime", "utimes",
                 "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
                 "fremovexattr")
# Scheduling state is inherited: an answer that lowered the template's priority, pinned it to one CPU
# or gave it the idle I/O class (same uid, no signal needed) would slow every later answer.
_SCHEDULING = ("setpriority", "sched_setparam", "sched_setscheduler", "sched_setaffinity", "sched_setattr",
               "ioprio_set")


@dataclass(frozen=True)
class Arg:
    """`action` when argument `index` (its low 32 bits; `wide`: all 64) passes `test`, else fall through.

    test: "any" (some bit of value set), "none" (no bit of value set), "eq", "ne", "nonzero", "always"
    (the action whatever the argument: the default at the end of an allow-list).
    """

    index: int
    test: str
    value: int
    action: int
    wide: bool = False


def template_rules() -> dict[str, int | tuple[Arg, ...]]:
    """The template process: may fork, may not do anything else a scorer never needs."""
    rules: dict[str, int | tuple[Arg, ...]] = dict.fromkeys(_NEVER, KILL)
    rules.update(dict.fromkeys(_MODIFY_FILES, DENY_WRITE))
    rules.update(dict.fromkeys(_SCHEDULING, DENY_SET))
    rules.update(clone3=NOSYS, openat2=NOSYS)  # their flags sit behind a pointer: callers fall back
    rules.update(open=(Arg(1, "any", WRITE_FLAGS, DENY_WRITE),), openat=(Arg(2, "any", WRITE_FLAGS, DENY_WRITE),),
                 clone=(Arg(0, "any", NEW_NAMESPACES, KILL),), prlimit64=(Arg(0, "ne", 0, KILL),),
                 ioctl=(*(Arg(1, "eq", request, KILL) for request in TERMINAL_INJECTION),
                        *(Arg(1, "eq", request, ALLOW) for request in ALLOWED_IOCTLS),
                        Arg(1, "always", 0, NOT_A_TERMINAL)))
    return rules


def answer_rules(pid: int) -> dict[str, int | tuple[Arg, ...]]:
    """One answer's process (pid as it sees itself): no new processes, signals to itself only."""
    to_others = (Arg(0, "ne", pid, KILL),)
    return {"fork": KILL, "vfork": KILL, "clone": (Arg(0, "none", CLONE_THREAD, KILL),),
            "kill": to_others, "tkill": to_others, "tgkill": to_others, "rt_sigqueueinfo": to_others,
            "rt_tgsigqueueinfo": to_others, "setrlimit": DENY_SET,
            "prlimit64": (Arg(2, "nonzero", 0, DENY_SET, wide=True),),
            "shmget": KILL, "msgget": KILL, "semget": KILL, "mq_open": KILL}


def architecture() -> tuple[int, int] | None:
    """(column in SYSCALLS, AUDIT_ARCH value) of this machine, or None where no filter is known."""
    if not sys.platform.startswith("linux") or sys.byteorder != "little" or struct.calcsize("P") != 8:
        return None
    return ARCHES.get(platform.machine().lower().replace("arm64", "aarch64").replace("amd64", "x86_64"))


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _arg_check(arg: Arg) -> list[bytes]:
    """Instructions that return arg.action when the test holds, else fall through (A is clobbered)."""
    low, ret = _ins(_LD, 16 + 8 * arg.index), _ins(_RET, arg.action)
    if arg.test == "always":
        return [ret]
    if arg.test == "nonzero":
        return [low, _ins(_JEQ, 0, 1, 0), ret, _ins(_LD, 20 + 8 * arg.index), _ins(_JEQ, 0, 1, 0), ret]
    jump = {"any": (_JSET, 0, 1), "none": (_JSET, 1, 0), "eq": (_JEQ, 0, 1), "ne": (_JEQ, 1, 0)}[arg.test]
    return [low, _ins(jump[0], arg.value, jump[1], jump[2]), ret]


def compile_filter(rules: dict, arch: tuple[int, int], newest: int | None = None) -> bytes:
    """A BPF program: wrong architecture or x32 calls kill; each rule by number; the rest allowed.

    `newest`: calls above this number fail with ENOSYS (only the first filter needs it).
    """
    column, audit_arch = arch
    prog = [_ins(_LD, _ARCH), _ins(_JEQ, audit_arch, 1, 0), _ins(_RET, KILL), _ins(_LD, _NR)]
    if column == 0:  # x86_64: the x32 ABI numbers calls from 0x40000000 and would bypass the list
        prog += [_ins(_JGE, 0x40000000, 0, 1), _ins(_RET, KILL)]
    if newest is not None:
        prog += [_ins(_JGE, newest + 1, 0, 1), _ins(_RET, NOSYS)]
    for name, rule in rules.items():
        nr = SYSCALLS[name][column]
        if nr is None:
            continue
        if isinstance(rule, int):
            body = [_ins(_RET, rule)]
        else:
            body = [ins for arg in rule for ins in _arg_check(arg)] + [_ins(_RET, ALLOW)]
        prog += [_ins(_JEQ, nr, 0, len(body)), *body]
    prog.append(_ins(_RET, ALLOW))
    if len(prog) > 4096:
        raise ValueError(f"seccomp filter of {len(prog)} instructions is over the kernel's 4096")
    return b"".join(prog)


_PID_MARK = 0x7A5E1D00  # stands for the pid in the precompiled answer filter


@functools.lru_cache(maxsize=4)
def _answer_template(arch: tuple[int, int]) -> bytes:
    return compile_filter(answer_rules(_PID_MARK), arch)


def answer_filter(pid: int, arch: tuple[int, int]) -> bytes:
    """`answer_rules(pid)` compiled: the program is built once and the pid patched in (fast per fork)."""
    program = _answer_template(arch)
    mark, value = struct.pack("=I", _PID_MARK), struct.pack("=I", pid)
    if program.count(mark) != 5:
        raise AssertionError("the pid mark appears where no pid belongs")
    return program.replace(mark, value)


_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_libc = None


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(program: bytes) -> None:
    """Install a compiled filter on this process (sets no_new_privs first, which the kernel requires)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    libc = _libc
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _Prog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    calls = ((_PR_SET_NO_NEW_PRIVS, 1, None), (_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog)))
    for option, arg, pointer in calls:
        if libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_void_p(pointer), ctypes.c_ulong(0), ctypes.c_ulong(0)):
            code = ctypes.get_errno()
            raise OSError(code, f"prctl({option}) for seccomp failed: {os.strerror(code)}")
