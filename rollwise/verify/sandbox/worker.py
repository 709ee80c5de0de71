"""The verifier worker: a sandboxed, pre-imported template that forks one process per answer.

The guard (`rollwise.verify.guard`) starts `worker_main` in a process of its own. That prepares
the verifier (imports, datasets) with the trainer's rights, then enters the sandbox
(`rollwise.verify.sandbox.policy`) and serves there: for each answer the template forks a child that
adds a stricter seccomp filter, a CPU-time limit and an audit hook, scores the one answer,
writes one result line and is killed. No answer ever runs in a process an earlier answer
touched, so an answer that patches the scorer changes nothing for the next one.

The template enforces the per-answer timeout (it kills the child), reads at most one bounded
line from it and checks it with the same strict parser the trainer uses (`rollwise.verify.sandbox.protocol`).
Results: "" (scored), "timeout", "memory" (MemoryError), "blocked" (a refused system call killed
the child, or the audit hook refused a side effect), "error" (the scorer raised), "crash" (the
child died or sent garbage).
"""

from __future__ import annotations

import gc
import math
import os
import select
import signal
import sys
import time
from functools import partial

from rollwise.data.pool import PoolItem
from rollwise.verify.sandbox import seccomp
from rollwise.verify.base import Score
from rollwise.verify.sandbox.protocol import (BLOCKED, CRASH, ERROR, MAX_LINE, MEMORY, TIMEOUT, checked,
                                     encode_ready, encode_result, failed, parse_result, read_job)
from rollwise.verify.sandbox.policy import run_confined
from rollwise.verify.sandbox.settings import SandboxPolicy


class _CallState:
    blocked = False


_BLOCKED_PREFIXES = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill",
                     "os.killpg", "subprocess.", "pty.", "socket.", "ctypes.", "os.remove", "os.unlink", "os.rename",
                     "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink", "os.truncate",
                     "os.putenv", "os.unsetenv", "os.setxattr", "os.removexattr", "os.utime", "shutil.",
                     "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.", "resource.setrlimit",
                     "resource.prlimit", "sqlite3.")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _audit(event: str, args: tuple) -> None:
    """Refuse side effects a verifier never needs (defence in depth: seccomp is the boundary)."""
    if event == "open":
        mode, flags = (args[1], args[2]) if len(args) >= 3 else (None, 0)
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        if not writes:
            return
    elif not event.startswith(_BLOCKED_PREFIXES):
        return
    _CallState.blocked = True
    raise PermissionError(f"{event} is not allowed in a verifier worker")


def worker_main(job_conn, result_conn, verifier, timeout: float, memory_mb: int,
                policy: SandboxPolicy | None = None) -> None:
    """The worker process: prepare the verifier, then serve answers from inside the sandbox."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    sys.dont_write_bytecode = True
    prepare = getattr(verifier, "prepare", None)
    if prepare is not None:
        prepare()  # our own code on trusted data, before the sandbox (it may read data files)
    job_fd, result_fd = os.dup(job_conn.fileno()), os.dup(result_conn.fileno())
    job_conn.close()
    result_conn.close()
    serve = partial(_serve, job_fd, result_fd, verifier, timeout)
    sys.exit(run_confined(serve, (job_fd, result_fd), memory_mb, policy or SandboxPolicy()))


def _serve(job_fd: int, result_fd: int, verifier, timeout: float, protections: dict) -> int:
    """The template's loop: a job is a list of (index, answer, item); one result line per answer."""
    cpu = math.ceil(timeout) + 1
    filtered = bool(protections.get("seccomp"))
    # Without seccomp an answer could start processes that outlive it. PID 1 of its own namespace
    # may kill every other process there after each answer; never outside such a namespace, where
    # kill(-1) would reach every process of the uid.
    sweep = not filtered and bool(protections.get("pid_namespace")) and os.getpid() == 1
    _write_all(result_fd, encode_ready({**protections, "fork_per_answer": True, "audit_hook": True,
                                        "answer_cpu_limit_s": cpu, "file_size_limit": 0}))
    gc.freeze()  # children inherit these objects: no collection there touches (and copies) them
    while True:
        job = read_job(job_fd)
        if job is None:
            return 0
        for index, answer, item in job:
            try:
                score = score_in_child(verifier, index, answer, item, timeout, cpu, filtered, (job_fd, result_fd),
                                       watch=job_fd)
            except TrainerGone:  # the answer is killed; the end of the PID namespace takes the rest
                return 0
            if sweep:
                _kill_others()
            _write_all(result_fd, encode_result(index, score))
        _reap(block=False)


class TrainerGone(Exception):
    """The trainer's end of the job pipe closed (it exited or was killed) while an answer ran."""


def score_in_child(verifier, index: int, answer: str, item: PoolItem, timeout: float, cpu: int, filtered: bool,
                   close_fds: tuple[int, ...] = (), watch: int | None = None) -> Score:
    """Score one answer in a fresh fork of this process; whatever the child does, return a Score.

    `watch`: a pipe whose hang-up (the trainer died) kills the child at once and raises TrainerGone,
    so that the chain does not outlive the trainer by up to one answer's timeout.
    """
    _reap(block=len(_UNREAPED) >= 8)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        _answer_process(verifier, index, answer, item, write_fd, (read_fd, *close_fds), cpu, filtered)
    os.close(write_fd)
    line, why = _read_line(read_fd, time.monotonic() + timeout, watch)
    os.close(read_fd)
    try:
        os.kill(pid, signal.SIGKILL)  # done or not: its state may be anything now
    except ProcessLookupError:
        pass
    if why == "hangup":
        raise TrainerGone()
    if line is not None:
        _UNREAPED.add(pid)  # reaped later: the next answer need not wait for this one's exit
        try:
            return parse_result(line, index)
        except Exception:  # noqa: BLE001 - only ProtocolError (the parser is total): never die of a line
            return failed(CRASH)
    _, status = os.waitpid(pid, 0)
    if why == "timeout":
        return failed(TIMEOUT)
    signalled = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    return failed({signal.SIGSYS: BLOCKED, signal.SIGXCPU: TIMEOUT}.get(signalled, CRASH))


_UNREAPED: set[int] = set()


def _kill_others() -> None:
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:  # nobody else: the usual case
        pass
    for pid in list(_UNREAPED):  # all dead now: collect them
        os.waitpid(pid, 0)
    _UNREAPED.clear()
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:  # orphans the answer left behind
            pass
    except ChildProcessError:
        pass


def _reap(block: bool) -> None:
    """Collect answer processes that were killed after they answered (all of them when `block`)."""
    for pid in list(_UNREAPED):
        if os.waitpid(pid, 0 if block else os.WNOHANG)[0]:
            _UNREAPED.discard(pid)


def _read_line(fd: int, deadline: float, watch: int | None = None) -> tuple[bytes | None, str]:
    """The first line the child writes, or (None, "timeout" / "eof" / "long" / "hangup")."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if watch is not None:
        poller.register(watch, 0)  # hang-up and errors only: the trainer sends nothing during a chunk
    buffer = b""
    while True:
        left = deadline - time.monotonic()
        events = poller.poll(left * 1000) if left > 0 else []
        if not events:
            return None, "timeout"
        if any(f == watch for f, _ in events):
            return None, "hangup"
        if not any(f == fd for f, _ in events):
            continue
        data = os.read(fd, MAX_LINE + 1)
        if not data:
            return None, "eof"
        buffer += data
        if b"\n" in buffer:
            return buffer.split(b"\n", 1)[0], ""
        if len(buffer) > MAX_LINE:
            return None, "long"


def _answer_process(verifier, index, answer, item, write_fd, close_fds, cpu: int, filtered: bool) -> None:
    """The child: seal itself, score one answer, write one line, exit. Never returns."""
    try:
        for fd in close_fds:
            os.close(fd)
        os.dup2(0, 2)  # the template's stdin is /dev/null: hostile text never reaches the trainer's terminal
        gc.disable()  # a short life: no collection, no copying of the template's pages
        import resource

        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        if filtered:
            seccomp.install(seccomp.answer_filter(os.getpid(), seccomp.architecture()))
        sys.addaudithook(_audit)
        os.write(write_fd, encode_result(index, _call(verifier, answer, item)))
    finally:
        os._exit(0)


def _call(verifier, answer: str, item: PoolItem) -> Score:
    """One verifier call; exceptions become error scores, refused side effects "blocked"."""
    _CallState.blocked = False
    try:
        score = checked(verifier.score(answer, item))
    except MemoryError:
        return failed(MEMORY)
    except BaseException:  # a scorer's bug, or hostile text calling exit(): this answer is wrong
        score = failed(ERROR)
    return failed(BLOCKED) if _CallState.blocked else score


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
