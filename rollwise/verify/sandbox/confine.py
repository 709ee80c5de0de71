"""Confining the verifier template process, then measuring from inside what took effect.

Runs in the template (PID 1 of its PID namespace, see `rollwise.verify.sandbox.policy`), in this order:
mounts (needs the capabilities the user namespace gave), identity, limits, prctl flags, seccomp
(last: it forbids the calls the steps before it make). Every step that the kernel refuses is
noted; `measure` then reads /proc and the namespace links rather than trusting the steps.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import stat
import sys

from rollwise.verify.sandbox import linux, mounts, seccomp
from rollwise.verify.sandbox.settings import KEEP_ENVIRONMENT, PROCESS_LIMIT, SandboxPolicy, set_hard_limit


def confine(active: set, notes: list, memory_mb: int, policy: SandboxPolicy, ids: tuple, origin: tuple) -> dict:
    """Apply every protection the kernel allows to this process; return what is measurably active."""
    try:
        os.setsid()  # no controlling terminal: nothing can be typed into the trainer's shell
    except OSError:
        pass
    privileged = "user" in active or os.geteuid() == 0
    if "mount" in active and privileged:
        _readonly_files(policy, notes)
        if "pid" in active:
            _private_proc(notes)
    os.chdir("/")
    _scrub_environment()
    _drop_identity(active, ids, notes, origin)
    own_count = "user" in active or (os.getuid() == ids[0] and ids[0] != origin[1])
    limits = _limits(memory_mb, own_count)
    linux.prctl(linux.PR_SET_DUMPABLE, 0)  # no ptrace by same-uid processes, no core files
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # again: credentials changed
    filtered = _seccomp(policy, notes)
    if not filtered:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    return measure(origin, limits, filtered, notes)


def _readonly_files(policy: SandboxPolicy, notes: list) -> None:
    """Private propagation, then every mount read-only, nosuid and nodev: no file of the user can be
    written, and no device node but the private /dev's three can be opened."""
    try:
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    except OSError as exc:
        notes.append(f"private mounts: {exc.strerror}; files stay writable where permissions allow")
        return
    if policy.readonly == "off":
        return
    devices = mounts.device_paths()
    if policy.readonly == "auto":
        try:
            linux.mount_setattr("/", linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV)
            for path in devices & {point for point, _ in _mounts()}:
                linux.mount_setattr(path, 0, linux.MOUNT_ATTR_NODEV, recursive=False)
            return
        except OSError:
            pass  # before Linux 5.12: remount one by one
    failed = []
    for point, options in _reachable_mounts():  # covered ones (the host's /dev/pts) have no path to remount
        flags = linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY | linux.MS_NOSUID
        flags |= 0 if point in devices else linux.MS_NODEV
        for option in options:
            flags |= linux.MOUNT_OPTION_FLAGS.get(option, 0)
        try:
            linux.mount(None, point, None, flags)
        except OSError:
            failed.append(point)
    if failed:
        notes.append(f"read-only remount failed for {len(failed)} mounts ({', '.join(failed[:3])})")


def _mounts() -> list[tuple[str, list[str]]]:
    """(mount point, per-mount options) from /proc/self/mountinfo, in mount order."""
    return [(point, options) for _, _, point, options in _mount_rows()]


def _mount_rows() -> list[tuple[int, int, str, list[str]]]:
    rows = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040: a space
            rows.append((int(fields[0]), int(fields[1]), point, fields[5].split(",")))
    return rows


def _reachable_mounts() -> list[tuple[str, list[str]]]:
    """Mounts a path can reach: not covered by another mount on the same point, nor inside one that is."""
    rows = {row[0]: row for row in _mount_rows()}
    covered = {parent for _, parent, point, _ in rows.values() if parent in rows and rows[parent][2] == point}

    def reachable(mount_id: int) -> bool:
        _, parent, point, _ = rows[mount_id]
        if mount_id in covered:
            return False
        while parent in rows and rows[parent][2] == point:  # the stack this mount covers
            parent = rows[parent][1]
        return parent not in rows or reachable(parent)

    return [(point, options) for mount_id, (_, _, point, options) in rows.items() if reachable(mount_id)]


def _private_proc(notes: list) -> None:
    """A /proc of this PID namespace only: the trainer's processes do not appear in it."""
    try:
        linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | linux.MS_RDONLY)
    except OSError as exc:
        notes.append(f"private /proc: {exc.strerror}")


def _scrub_environment() -> None:
    """Drop the trainer's environment (API tokens) and arguments, and blank the blocks they came in."""
    kept = {k: os.environ[k] for k in KEEP_ENVIRONMENT if k in os.environ}
    os.environ.clear()
    sys.argv[:] = sys.argv[:1]
    try:  # /proc/self/environ and cmdline read the memory the process started with: zero it
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        for start, end in ((int(fields[45]), int(fields[46])), (int(fields[47]), int(fields[48]))):
            if 0 < start < end and end - start < 2**20:
                linux.memset(start, end - start)
    except (OSError, IndexError, ValueError):
        pass
    os.environ.update(kept)


def _drop_identity(active: set, ids: tuple, notes: list, origin: tuple) -> None:
    """No capabilities at all; as root without a user namespace, become uid/gid 65534 with no groups."""
    if "user" not in active and os.geteuid() == 0:
        try:
            os.setgroups([])
        except PermissionError:  # a user namespace that denies setgroups has none to drop
            pass
        linux.drop_bounding_set()  # while still allowed to
        linux.prctl(linux.PR_SET_KEEPCAPS, 0)
        os.setresgid(ids[1], ids[1], ids[1])
        os.setresuid(ids[0], ids[0], ids[0])
    elif "user" not in active or ids[0] == origin[1]:
        notes.append("same uid as the trainer (not root, or no uid 65534 in its user namespace): its terminals "
                     "are out of reach by path (private /dev, nodev, no descriptor), not by ownership")
    linux.drop_capabilities()
    if outside_uid() == 0 and origin[0].get("initial_user_namespace"):
        raise SystemExit("rollwise verifier sandbox: still root after dropping privileges; refusing to score")


def outside_uid() -> int:
    """This process's uid as the trainer's user namespace sees it (-1 when unmapped)."""
    uid = os.getuid()
    with open("/proc/self/uid_map") as f:
        for line in f:
            inside, outside, count = (int(x) for x in line.split())
            if inside <= uid < inside + count:
                return outside + uid - inside
    return -1


def _limits(memory_mb: int, own_count: bool) -> dict:
    """Hard limits (soft = hard, so nothing inside can raise them back)."""
    with open("/proc/self/statm") as f:  # address space already mapped by the imports
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    memory = set_hard_limit(resource.RLIMIT_AS, max(memory_mb * 2**20, mapped + 128 * 2**20))
    for which in (resource.RLIMIT_CORE, resource.RLIMIT_MSGQUEUE, resource.RLIMIT_MEMLOCK):
        set_hard_limit(which, 0)
    set_hard_limit(resource.RLIMIT_NOFILE, 256)
    # RLIMIT_FSIZE is set to 0 in each answer's process (rollwise.verify.sandbox.worker), not here: the
    # template must still be able to write a traceback to a stderr that is a log file.
    limits = {"memory_limit_mb": memory // 2**20}
    # NPROC counts every process of the uid (per user namespace): only a count of the sandbox's own
    # can be held to a few; the trainer's own uid in the trainer's namespace cannot.
    limits["process_limit"] = set_hard_limit(resource.RLIMIT_NPROC, PROCESS_LIMIT) if own_count else -1
    return limits


def _seccomp(policy: SandboxPolicy, notes: list) -> bool:
    """The template's filter, then a probe: a child with the answer filter must die when it forks."""
    arch = seccomp.architecture()
    if not policy.seccomp or arch is None:
        notes.append("seccomp: " + ("switched off" if not policy.seccomp else "no filter for this architecture"))
        return False
    try:
        seccomp.install(seccomp.compile_filter(seccomp.template_rules(), arch, newest=seccomp.LAST_REVIEWED))
    except OSError as exc:
        notes.append(f"seccomp: {exc.strerror}")
        return False
    pid = os.fork()
    if pid == 0:
        try:
            seccomp.install(seccomp.answer_filter(os.getpid(), arch))
            os.fork()  # must be killed here
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS):
        notes.append("seccomp: the answer filter did not stop a fork")
        return False
    return True


def measure(origin: tuple, limits: dict, filtered: bool, notes: list) -> dict:
    """Protections as this process observes them (not as requested)."""
    namespaces, trainer_uid = origin
    status = _status()
    new = {}
    for name, file in linux.NAMESPACE_FILES.items():
        try:
            new[name] = os.readlink(f"/proc/self/ns/{file}") != namespaces[name]
        except OSError:
            new[name] = False
    interfaces = _interfaces()
    uid = outside_uid()
    report = {f"{name}_namespace": value for name, value in new.items()}
    report.update({
        "linux": True, "no_network": new["network"] and set(interfaces) <= {"lo"},
        "private_proc": os.getpid() == 1 and os.readlink("/proc/self") == "1",
        "readonly_filesystem": not _writable_mounts(), "uid": uid, "separate_uid": uid not in (0, trainer_uid),
        "no_capabilities": all(int(status.get(f"Cap{kind}", "1"), 16) == 0
                               for kind in ("Eff", "Prm", "Inh", "Amb", "Bnd")),
        "private_dev": _private_dev(), "no_terminal": _no_terminal(),
        "no_new_privs": status.get("NoNewPrivs") == "1", "seccomp": filtered and status.get("Seccomp") == "2",
        "parent_death_signal": linux.parent_death_signal() == signal.SIGKILL,
        "environment_cleared": set(os.environ) <= set(KEEP_ENVIRONMENT), **limits,
        "degraded": "; ".join(notes)[:500],
    })
    return report


def _status() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _interfaces() -> list[str]:
    try:
        with open("/proc/self/net/dev") as f:
            return [line.split(":")[0].strip() for line in f.readlines()[2:]]
    except OSError:
        return ["unknown"]


def _private_dev() -> bool:
    """/dev holds only the three nodes, and every other mount is nodev (device nodes cannot be opened)."""
    try:
        names = sorted(os.listdir("/dev"))
    except OSError:
        return False
    devices = mounts.device_paths()
    return names == sorted(mounts.DEVICES) and all(
        "nodev" in options for point, options in _reachable_mounts() if point not in devices)


def _no_terminal() -> bool:
    """No controlling terminal (tty_nr 0) and no open descriptor of a terminal (major 4, 5 or 136-143)."""
    with open("/proc/self/stat") as f:
        tty_nr = int(f.read().rsplit(")", 1)[1].split()[4])
    for name in os.listdir("/proc/self/fd"):
        try:
            info = os.stat(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if stat.S_ISCHR(info.st_mode) and os.major(info.st_rdev) in (4, 5, *range(136, 144)):
            return False
    return tty_nr == 0


def _writable_mounts() -> list[str]:
    return [point for point, options in _reachable_mounts() if "rw" in options]
