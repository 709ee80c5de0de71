"""The verifier worker process: scores answers one call at a time under a timer, a memory cap and
an audit hook. The parent side (`rollwise.tasks.guard`) starts, feeds, times and replaces workers.

A call that runs past its time raises inside the scorer (a BaseException, so that scorers' own
`except Exception` cannot swallow it); MemoryError, a refused side effect or any exception become
an error Score. After a timeout or MemoryError the worker exits, because its state may be damaged:
the parent starts a fresh one.
"""

from __future__ import annotations

import math
import os
import signal
import sys

from rollwise.pool import PoolItem
from rollwise.tasks.base import Score

TIMEOUT, CRASH, ERROR, MEMORY, BLOCKED, REJECTED = "timeout", "crash", "error", "memory", "blocked", "rejected"

def checked(score) -> Score:
    """A verifier's result as a well-formed Score (acc bool, finite reward in [0, 1])."""
    if not isinstance(score, Score):
        raise TypeError(f"verifier returned {type(score).__name__}, not Score")
    reward = float(score.reward)
    if not math.isfinite(reward):
        reward = 0.0
    return Score(bool(score.acc), min(1.0, max(0.0, reward)), str(score.error))


def failed(error: str) -> Score:
    return Score(False, 0.0, error)


class _CallTimeout(BaseException):
    """Raised by the per-call timer; a BaseException so that scorers' `except Exception` miss it."""


class _CallState:
    fired = False
    blocked = False


_BLOCKED_PREFIXES = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill",
                     "os.killpg", "subprocess.", "pty.", "socket.", "ctypes.", "os.remove", "os.unlink", "os.rename",
                     "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink", "os.truncate",
                     "os.putenv", "os.unsetenv", "shutil.", "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _audit(event: str, args: tuple) -> None:
    """Refuse side effects a verifier never needs, in case a scorer evaluates hostile text."""
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


def _on_alarm(signum, frame) -> None:
    _CallState.fired = True
    raise _CallTimeout()


def _limit_resources(memory_mb: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with open("/proc/self/statm") as f:  # address space already mapped by the imports
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = max(memory_mb * 2**20, mapped + 128 * 2**20)  # never below what the imports already hold
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _timed_call(verifier, answer: str, item: PoolItem, timeout: float) -> Score:
    """One verifier call under the per-call timer; exceptions become error scores."""
    _CallState.fired = _CallState.blocked = False
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            score = checked(verifier.score(answer, item))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _CallTimeout:
        return failed(TIMEOUT)
    except MemoryError:
        return failed(MEMORY)
    except Exception:
        score = failed(ERROR)
    if _CallState.fired:  # the scorer swallowed the timer's exception with a bare except
        return failed(TIMEOUT)
    if _CallState.blocked:
        return failed(BLOCKED)
    return score


def worker_main(conn, verifier, timeout: float, memory_mb: int) -> None:
    """Worker loop: receive a chunk, send back one (index, Score) per answer, until None or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    sys.dont_write_bytecode = True
    prepare = getattr(verifier, "prepare", None)
    if prepare is not None:
        prepare()
    if sys.platform.startswith("linux"):
        _limit_resources(memory_mb)
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.addaudithook(_audit)
    conn.send("ready")
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for index, answer, item in chunk:
            score = _timed_call(verifier, answer, item, timeout)
            conn.send((index, score))
            if score.error in (TIMEOUT, MEMORY):
                return
