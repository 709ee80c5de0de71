"""The verifier guard: every answer is scored here, and hostile answers cannot hurt the run.

Model output is untrusted (DESIGN.md, Conventions). Three layers:

1. A cheap pre-check refuses text no verifier should see: longer than `max_chars`, NUL bytes,
   lone surrogates (invalid UTF-8 decoded with surrogateescape).
2. Verifiers marked `in_process_safe` (our own bounded, eval-free scorers) and `quick_score`
   fast paths run in the training process: the hot path, microseconds per answer.
3. Everything else runs in worker processes started lazily from a "forkserver" (never a fork of
   the torch process). A worker (`rollwise.tasks.worker`) caps its address space (RLIMIT_AS), refuses process creation,
   file writes, sockets and ctypes through an audit hook (defence in depth, not a security
   boundary), and stops each call with its own timer. The parent keeps a hard deadline per call
   as the backstop for hangs inside C code (`9**9**9**9`): it kills the worker, starts a
   replacement and re-sends the unfinished rest of the chunk. Work goes out in chunks, one
   message each, and results stream back one per answer, so the parent always knows which
   answer was running when a worker hung or died.

Score.error says what happened: "rejected" (pre-check), "timeout", "crash" (worker died),
"memory", "blocked" (audit hook), "error" (the scorer raised). `pop_counts()` groups them as
timeouts, errors and rejected. Scripts using worker verifiers need the usual multiprocessing
`if __name__ == "__main__":` guard.

    with GuardedVerifier(build_verifier("file", "math"), workers=2, timeout=5.0) as v:
        scores = v.score_batch(answers, items)
        v.pop_counts()   # {"timeouts": 0, "errors": 0, "rejected": 0}
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import pickle
import time
from collections import deque
from multiprocessing.connection import wait

from rollwise.pool import PoolItem
from rollwise.tasks.base import WRONG, Score
from rollwise.tasks.worker import (BLOCKED, CRASH, ERROR, MEMORY, REJECTED, TIMEOUT, checked, failed,
                                   worker_main)

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 10_000
STARTUP_TIMEOUT = 120.0  # importing sympy or reasoning-gym on two busy cores takes seconds
MAX_STARTUP_FAILURES = 3
CHUNK = 64

COUNTER_OF = {TIMEOUT: "timeouts", CRASH: "errors", ERROR: "errors", MEMORY: "errors", BLOCKED: "errors",
              REJECTED: "rejected"}
COUNTERS = ("timeouts", "errors", "rejected")


def precheck(answer, max_chars: int = MAX_ANSWER_CHARS) -> str | None:
    """Why an answer is refused before any verifier sees it, or None when it may be scored."""
    if not isinstance(answer, str):
        return f"not text ({type(answer).__name__})"
    if len(answer) > max_chars:
        return f"longer than {max_chars} characters"
    if "\x00" in answer:
        return "NUL byte"
    try:
        answer.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid text (lone surrogate)"
    return None


class GuardedVerifier:
    """Scores batches of answers through a verifier, in-process when safe, else in workers.

    Results are in input order and do not depend on chunking or the number of workers.
    `pop_counts()` returns and resets {"timeouts", "errors", "rejected"}.
    """

    def __init__(self, verifier, workers: int = 2, timeout: float = 5.0, memory_mb: int = 1024,
                 max_chars: int = MAX_ANSWER_CHARS):
        if workers < 1 or timeout <= 0 or memory_mb < 64:
            raise ValueError(f"verify workers must be >= 1, timeout > 0 and memory >= 64 MB; got {workers}, "
                             f"{timeout}, {memory_mb}")
        self.verifier = verifier
        self.name = getattr(verifier, "name", type(verifier).__name__)
        self.in_process_safe = bool(getattr(verifier, "in_process_safe", False))
        self.workers, self.timeout, self.memory_mb, self.max_chars = workers, float(timeout), memory_mb, max_chars
        self._quick = getattr(verifier, "quick_score", None)
        self._pool: _WorkerPool | None = None
        self._counts = dict.fromkeys(COUNTERS, 0)
        if not self.in_process_safe:
            try:
                pickle.dumps(verifier)
            except Exception as exc:
                raise ValueError(f"verifier {self.name!r} cannot be sent to worker processes: {exc}") from exc

    def score(self, answer: str | None, item: PoolItem) -> Score:
        return self.score_batch([answer], [item])[0]

    def score_batch(self, answers: list[str | None], items: list[PoolItem]) -> list[Score]:
        if len(answers) != len(items):
            raise ValueError(f"score_batch got {len(answers)} answers for {len(items)} items")
        scores = [self._score_here(a, it) for a, it in zip(answers, items)]
        remote = [(i, answers[i], items[i]) for i, s in enumerate(scores) if s is None]
        if remote:
            if self._pool is None:
                self._pool = _WorkerPool(self.verifier, self.workers, self.timeout, self.memory_mb)
            for i, s in self._pool.run(remote).items():
                scores[i] = s
        for s in scores:
            if s.error in COUNTER_OF:
                self._counts[COUNTER_OF[s.error]] += 1
        return scores

    def _score_here(self, answer, item: PoolItem) -> Score | None:
        """The score when the training process may compute it; None when a worker must."""
        if answer is None:
            return WRONG
        if precheck(answer, self.max_chars) is not None:
            return failed(REJECTED)
        try:
            if self._quick is not None:
                quick = self._quick(answer, item)
                if quick is not None:
                    return checked(quick)
            if self.in_process_safe:
                return checked(self.verifier.score(answer, item))
        except Exception as exc:  # a bug in a safe verifier must not stop training; it is counted
            log.warning("verifier %s failed on item %s: %r", self.name, item.id, exc)
            return failed(ERROR)
        return None

    def pop_counts(self) -> dict[str, int]:
        counts, self._counts = self._counts, dict.fromkeys(COUNTERS, 0)
        return counts

    def close(self) -> None:
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is not None:
            pool.close()

    def __getstate__(self) -> dict:  # a copy starts its own workers when it needs them
        return {**self.__dict__, "_pool": None}

    def __enter__(self) -> GuardedVerifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: multiprocessing may already be torn down
            pass


# ---------------------------------------------------------------------------- parent side


def _context():
    """forkserver where available: workers fork from a clean server, never from the torch process."""
    if "forkserver" in mp.get_all_start_methods():
        return mp.get_context("forkserver")
    return mp.get_context("spawn")


class _Worker:
    """One worker process, its pipe, the chunk it is scoring and the deadline of its current step."""

    def __init__(self, ctx, verifier, timeout: float, memory_mb: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, verifier, timeout, memory_mb),
                                name="rollwise-verify", daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.job: list | None = None  # [(index, answer, item), ...] not yet answered
        self.deadline = time.monotonic() + STARTUP_TIMEOUT

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class _WorkerPool:
    def __init__(self, verifier, workers: int, timeout: float, memory_mb: int):
        self.verifier, self.size, self.timeout, self.memory_mb = verifier, workers, timeout, memory_mb
        # The worker's own timer fires at `timeout`; the parent kills at this backstop.
        self.hard_limit = timeout + max(1.0, 0.25 * timeout)
        self.ctx = _context()
        if self.ctx.get_start_method() == "forkserver":
            extra = getattr(verifier, "preload_modules", ())
            self.ctx.set_forkserver_preload(["rollwise.tasks.worker", type(verifier).__module__, *extra])
        self.slots: list[_Worker | None] = [None] * workers
        self.startup_failures = 0

    def run(self, tasks: list) -> dict[int, Score]:
        """Score (index, answer, item) tasks; every index gets a Score, whatever the workers do."""
        results: dict[int, Score] = {}
        size = max(1, min(CHUNK, math.ceil(len(tasks) / (2 * self.size))))
        queue = deque(tasks[i:i + size] for i in range(0, len(tasks), size))
        try:
            while queue or any(w is not None and w.job for w in self.slots):
                self._assign(queue)
                self._step(results, queue)
        except BaseException:  # interrupted mid-chunk: workers hold stale work, start afresh next time
            self.close()
            raise
        return results

    def _assign(self, queue: deque) -> None:
        starting = sum(1 for w in self.slots if w is not None and not w.ready)
        for k, w in enumerate(self.slots):
            if w is None and len(queue) > starting:
                self.slots[k] = _Worker(self.ctx, self.verifier, self.timeout, self.memory_mb)
                starting += 1
            elif w is not None and w.ready and w.job is None and queue:
                w.job = queue.popleft()
                try:
                    w.conn.send(w.job)
                except OSError:  # died while idle: not the fault of any answer
                    queue.appendleft(w.job)
                    w.job = None
                    self._replace(k, startup=True)
                    continue
                w.deadline = time.monotonic() + self.hard_limit

    def _step(self, results: dict, queue: deque) -> None:
        live = [w for w in self.slots if w is not None]
        if not live:
            return
        timeout = max(0.0, min(w.deadline for w in live) - time.monotonic())
        ready = wait([w.conn for w in live], timeout=timeout)
        for k, w in enumerate(self.slots):
            if w is not None and w.conn in ready:
                self._drain(k, w, results, queue)
        now = time.monotonic()
        for k, w in enumerate(self.slots):
            if w is not None and now >= w.deadline:
                self._fail(k, w, TIMEOUT, results, queue)

    def _drain(self, k: int, w: _Worker, results: dict, queue: deque) -> None:
        try:
            while w.conn.poll():
                message = w.conn.recv()
                if message == "ready":
                    w.ready, w.deadline, self.startup_failures = True, math.inf, 0
                    continue
                index, score = message
                results[index] = score
                w.job.pop(0)
                w.deadline = time.monotonic() + self.hard_limit if w.job else math.inf
                if not w.job:
                    w.job = None
                if score.error in (TIMEOUT, MEMORY):  # its state may be damaged: the worker has exited
                    self._requeue(w, queue)
                    self._replace(k)
                    return
        except (EOFError, OSError):
            self._fail(k, w, CRASH, results, queue)

    def _fail(self, k: int, w: _Worker, error: str, results: dict, queue: deque) -> None:
        """The worker hung or died: charge the answer it was running, re-send the rest."""
        if w.job:
            index = w.job.pop(0)[0]
            results[index] = failed(error)
            log.info("verifier worker %s on answer %d: killed and replaced", error, index)
        self._requeue(w, queue)
        self._replace(k, startup=not w.ready)

    @staticmethod
    def _requeue(w: _Worker, queue: deque) -> None:
        if w.job:
            queue.appendleft(w.job)
        w.job = None

    def _replace(self, k: int, startup: bool = False) -> None:
        w, self.slots[k] = self.slots[k], None
        w.kill()
        code = w.proc.exitcode
        if startup:
            self.startup_failures += 1
            if self.startup_failures >= MAX_STARTUP_FAILURES:
                self.close()
                raise RuntimeError(
                    f"verifier workers keep failing to start (exit code {code}): see the traceback on stderr above; "
                    "a script that trains must guard its entry point with `if __name__ == '__main__':`")

    def close(self) -> None:
        for k, w in enumerate(self.slots):
            if w is None:
                continue
            self.slots[k] = None
            try:
                w.conn.send(None)
            except OSError:
                pass
            w.proc.join(timeout=0.5)
            w.kill()
