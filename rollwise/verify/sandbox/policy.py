"""The verifier sandbox: OS-level isolation of the processes that run scorers on untrusted text.

A worker process (started by the guard, `rollwise.verify.guard`) calls `run_confined(body, ...)`.
That forks a namespace creator, which forks the confined template that runs `body`:

    worker (the trainer's user; maps the ids)  ->  creator (unshares namespaces)  ->  template
                                                                    (PID 1 of its own PID namespace)

The template, before it sees any answer:

- lives in new user, mount, PID, network, IPC, UTS and cgroup namespaces (where the kernel allows),
  so the trainer's processes are invisible, there is no network (only a loopback that is down),
  and its own /proc shows only the sandbox;
- sees every file read-only and nodev (all mounts, propagation private) and has no writable place
  at all; its working directory is /; its /dev holds only null, zero and urandom, and directories
  its uid cannot search on the way to Python's files are bridged by a tmpfs (`rollwise.verify.sandbox.mounts`);
- runs as uid 65534 (nobody) when the trainer is root (else as the trainer's own uid, mapped into
  its own user namespace) with no capabilities at all and no supplementary groups;
- has hard limits: address space (memory), file size 0, process count, no core dumps;
- has no_new_privs, a parent-death signal (SIGKILL, so the chain dies with the trainer), is not
  dumpable (no ptrace by same-uid processes, no core files), has no controlling terminal and no
  descriptor of one (stderr is a pipe the worker copies) and an emptied environment (tokens in the
  trainer's environment are gone);
- has a seccomp filter (`rollwise.verify.sandbox.seccomp`) that kills the process on exec, sockets, ptrace,
  namespaces, mounts, memfd_create, prlimit on other processes, refuses file modification and
  scheduling changes, and allows only a few ioctls.

Each answer then runs in its own fork of the template, which adds a stricter filter (no process
creation, signals to itself only, no raising of limits) and a CPU-time limit; see
`rollwise.verify.sandbox.worker`. Where the kernel lacks a feature the sandbox goes on without it and says
so: `rollwise.verify.guard.protections()` returns what is active here, measured inside a real sandbox.

    >>> from rollwise.verify.sandbox.settings import SandboxPolicy
    >>> SandboxPolicy().namespaces
    ('user', 'mount', 'pid', 'network', 'ipc', 'uts', 'cgroup')
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

from rollwise.verify.sandbox import linux, mounts
from rollwise.verify.sandbox.settings import SandboxPolicy


# ---------------------------------------------------------------------------- the process chain


def run_confined(body, keep_fds: tuple[int, ...], memory_mb: int, policy: SandboxPolicy) -> int:
    """Run body(protections) -> exit code in a confined grandchild; return its exit code.

    Called in the worker process; `keep_fds` are the only descriptors the template keeps (its stdin
    and stdout are /dev/null, its stderr a pipe that this process copies to its own), and the worker
    closes its own copies.
    """
    if not sys.platform.startswith("linux"):
        return body({"linux": False, "degraded": f"{sys.platform}: no OS sandbox, audit hook only"})
    origin, trainer_uid, ids = _namespace_ids(), os.getuid(), _sandbox_ids(policy)
    origin["initial_user_namespace"] = "yes" if _initial_user_namespace() else ""
    view = mounts.reach_plan(ids[0], ids[1], mounts.import_roots()) if ids[0] != trainer_uid else ({}, [])
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    err_r, err_w = os.pipe()
    worker = os.getpid()
    pid = os.fork()
    if pid == 0:
        _run_and_exit(_creator, body, keep_fds, (up_w, down_r, err_w), worker, ids, memory_mb, policy,
                      (origin, trainer_uid), view)
    for fd in (up_w, down_r, err_w, *keep_fds):
        os.close(fd)
    request = os.read(up_r, 1)  # empty: the creator died (its traceback is on stderr)
    if request:
        os.write(down_w, (b"1" if _write_id_maps(pid, ids) else b"0") if request == b"U" else b"-")
    os.close(up_r)
    os.close(down_w)
    _relay(err_r)
    return _wait(pid)


def _relay(fd: int) -> None:
    """Copy the chain's stderr (tracebacks of our own code: answers write to /dev/null) to this process's
    stderr until every holder closed it, so that no sandboxed process holds the user's terminal."""
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not data:
            break
        try:
            os.write(2, data)
        except OSError:
            pass
    os.close(fd)


def _sandbox_ids(policy: SandboxPolicy) -> tuple[int, int]:
    """(uid, gid) the sandbox runs as, outside and inside its user namespace alike.

    Root gives the sandbox an unprivileged uid of its own (65534), which owns none of the user's
    terminals or files. Anyone else can map only their own uid into a user namespace (the kernel's
    rule, without a setuid helper), so the sandbox keeps it: terminals are then out of reach by path
    (a private /dev, nodev everywhere, no descriptor, no controlling terminal), not by ownership.
    """
    if os.geteuid() == 0 and _mapped("uid_map", policy.uid) and _mapped("gid_map", policy.uid):
        return policy.uid, policy.uid
    return os.geteuid(), os.getegid()  # not root, or root of a user namespace without that uid


def _mapped(table: str, value: int) -> bool:
    """Whether an id exists in this process's user namespace (a rootless container may lack 65534)."""
    with open(f"/proc/self/{table}") as f:
        return any(int(a) <= value < int(a) + int(n) for a, _, n in (line.split() for line in f))


def _initial_user_namespace() -> bool:
    with open("/proc/self/uid_map") as f:
        return f.read().split() == ["0", "0", "4294967295"]


def _write_id_maps(pid: int, ids: tuple[int, int]) -> bool:
    """Map the sandbox's uid and gid, and nothing else, into the creator's new user namespace (from outside).

    Root is not mapped: no capability inside can apply to root's files, and no process inside can
    ever become root outside.
    """
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{ids[0]} {ids[0]} 1"),
                           ("gid_map", f"{ids[1]} {ids[1]} 1")):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        return True
    except OSError as exc:
        print(f"rollwise verifier sandbox: cannot map ids into the user namespace: {exc}", file=sys.stderr)
        return False


def _creator(body, keep_fds, pipes, worker, ids, memory_mb, policy, origin, view) -> int:
    """The middle process: unshares the namespaces, so that its child is PID 1 of the new one.

    It also builds the template's view of the files (`rollwise.verify.sandbox.mounts`): the sources are opened
    while it still has the trainer's identity, the mounts made once it has the sandbox's.
    """
    up_w, down_r, err_w = pipes
    _die_with(worker)
    os.setsid()  # no controlling terminal from here on: /dev/tty opens nothing
    null = os.open(os.devnull, os.O_RDWR)
    for fd, source in ((0, null), (1, null), (2, err_w)):  # no descriptor of the user's terminal
        os.dup2(source, fd)
    _close_fds_except({0, 1, 2, up_w, down_r, *keep_fds})
    root = os.geteuid() == 0
    if root:
        try:
            os.setgroups([])  # root's supplementary groups would otherwise follow into the sandbox
        except PermissionError:  # root of a user namespace where setgroups is denied: none to drop
            pass
    active, notes = _unshare(policy, root)
    notes += [f"uid {ids[0]} cannot read {path}: imports from it fail in scorers" for path in view[1]]
    os.write(up_w, b"U" if "user" in active else b"-")
    reply = os.read(down_r, 1)
    os.close(up_w)
    os.close(down_r)
    private_view = "mount" in active and ("user" in active or root)
    sources = mounts.open_sources(view[0], notes) if private_view else {}
    if "user" in active:
        if reply != b"1":
            raise SystemExit("rollwise verifier sandbox: the user namespace has no id mapping; refusing to go on")
        linux.prctl(linux.PR_SET_KEEPCAPS, 1)  # the creator and the template still have mounting to do
        os.setresgid(ids[1], ids[1], ids[1])
        os.setresuid(ids[0], ids[0], ids[0])
        linux.set_capabilities(linux.permitted_capabilities())
    if private_view:
        mounts.build_view(view[0], sources, notes)
    _die_with(worker)  # a change of credentials clears the parent-death signal
    alive_r, alive_w = os.pipe()
    creator = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        _run_and_exit(_template, body, alive_r, creator, active, notes, memory_mb, policy, ids, origin)
    os.close(alive_r)
    for fd in keep_fds:
        os.close(fd)
    return _wait(pid)


def _template(body, alive_r, creator, active, notes, memory_mb, policy, ids, origin) -> int:
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.set_blocking(alive_r, False)
    try:  # PID 1 has no visible parent: the creator's end of this pipe says whether it still lives
        if os.read(alive_r, 1) == b"":
            return 1
    except BlockingIOError:
        pass
    os.close(alive_r)  # stdin and stdout are /dev/null (the creator's), answers' stderr too (they dup 0)
    from rollwise.verify.sandbox.confine import confine

    return body(confine(active, notes, memory_mb, policy, ids, origin))


def _unshare(policy: SandboxPolicy, root: bool) -> tuple[set[str], list[str]]:
    """Enter as many of the policy's namespaces as the kernel allows: all at once, else one by one."""
    wanted = [n for n in linux.NAMESPACE_FLAGS if n in policy.namespaces]
    attempts = [wanted] if "user" in wanted else []
    if root:
        attempts.append([n for n in wanted if n != "user"])
    errors = []
    for names in attempts:
        try:
            linux.unshare(_flags(names))
            return set(names), [f"{n} namespace: {errors[0]}" for n in wanted if n not in names]
        except OSError as exc:
            errors.append(exc.strerror)
    active, notes = set(), []
    for name in wanted:
        if name == "user":
            notes.append(f"user namespace: {errors[0] if errors else 'not attempted'}")
            continue
        try:
            linux.unshare(_flags([name]))
            active.add(name)
        except OSError as exc:
            notes.append(f"{name} namespace: {exc.strerror}")
    return active, notes


def _flags(names) -> int:
    flags = 0
    for name in names:
        flags |= linux.NAMESPACE_FLAGS[name]
    return flags


def _namespace_ids() -> dict[str, str]:
    ids = {}
    for name, file in linux.NAMESPACE_FILES.items():
        try:
            ids[name] = os.readlink(f"/proc/self/ns/{file}")
        except OSError:
            ids[name] = ""
    return ids


def _die_with(parent: int) -> None:
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _close_fds_except(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            try:
                os.close(int(name))
            except OSError:
                pass


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _run_and_exit(fn, *args):
    """Run fn in a forked process and leave with its exit code: never return into the caller's stack."""
    code = 1
    try:
        code = fn(*args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


