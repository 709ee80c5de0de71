"""The trainer's side of the verifier workers: start, feed, time, check and replace them.

Workers start lazily from a "forkserver" (never a fork of the torch process). Work goes out in
chunks (length-prefixed pickles, written without blocking); results come back as lines of the
strict byte protocol (`rollwise.verify.sandbox.protocol`), one per answer and in order, so the trainer
always knows which answer a worker is on. A result that breaks the protocol in any way, silence
past the hard deadline (the template's own timeout plus slack: a hang in the template itself) or
a dead worker charge that answer "crash" or "timeout"; the worker is killed, a fresh one starts
and the rest of its chunk is sent again. A batch may also have a time budget and a circuit
breaker; both charge every answer still unscored and kill the busy workers.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import pickle
import select
import sys
import threading
import time
import types
from collections import Counter, deque

from rollwise.verify.base import Score
from rollwise.verify.sandbox.protocol import (BREAKER, BUDGET, CRASH, TIMEOUT, LineReader, ProtocolError, encode_job,
                                     failed, parse_ready, parse_result)
from rollwise.verify.sandbox.settings import SandboxPolicy
from rollwise.verify.sandbox.worker import worker_main

log = logging.getLogger("rollwise.verify.guard")

STARTUP_TIMEOUT = 120.0  # importing sympy or reasoning-gym on two busy cores takes seconds
MAX_STARTUP_FAILURES = 3
CHUNK = 32
_LOGGED: set[str] = set()


def context():
    """forkserver where available: workers fork from a clean server, never from the torch process."""
    if "forkserver" in mp.get_all_start_methods():
        return mp.get_context("forkserver")
    return mp.get_context("spawn")


_MAIN_SWAP = threading.Lock()


def start_without_main(proc, verifier) -> None:
    """Start `proc` without re-running the caller's main script in it, unless the verifier needs it.

    multiprocessing re-imports the parent's `__main__` in every forkserver or spawn child. A training
    script imports torch, so the template would carry torch, and every per-answer fork copies the
    page tables of all of it: sandboxed scoring ran at half its rate (docs/sandbox.md). Only a
    verifier defined in the script itself (it does not pickle without the script) keeps the import.
    """
    main = sys.modules.get("__main__")
    with _MAIN_SWAP:
        sys.modules["__main__"] = types.ModuleType("__main__")  # no __file__, no __spec__: nothing to re-import
        try:
            try:
                pickle.dumps(verifier)
            except Exception:  # noqa: BLE001 - it refers to the script: the child must import it
                sys.modules["__main__"] = main
            proc.start()
        finally:
            sys.modules["__main__"] = main


class Breaker:
    """Per prompt: once one prompt's answers have `count` timeouts that make at least `rate` of its
    finished answers, the rest of that prompt's answers are skipped (charged "breaker": unscored, so
    masked out of training, never wrong). Other prompts are untouched: a few slow groups cannot trip
    a decision over the whole batch. Keys are the items' prompt ids.
    """

    def __init__(self, count: int | None, rate: float):
        self.count, self.rate = count, rate
        self.timeouts: Counter = Counter()
        self.finished: Counter = Counter()
        self.open: set = set()  # prompts whose remaining answers are skipped

    def record(self, key, score: Score) -> None:
        self.finished[key] += 1
        self.timeouts[key] += score.error == TIMEOUT
        if (self.count is not None and self.timeouts[key] >= self.count
                and self.timeouts[key] >= self.rate * self.finished[key]):
            self.open.add(key)

    def tripped(self, key) -> bool:
        return key in self.open


class _Worker:
    """One worker process, its two pipes, the answers it holds and the deadline of the current one."""

    def __init__(self, ctx, verifier, timeout: float, memory_mb: int, policy: SandboxPolicy | None):
        job_r, job_w = ctx.Pipe(duplex=False)
        result_r, result_w = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=worker_main, args=(job_r, result_w, verifier, timeout, memory_mb, policy),
                                name="rollwise-verify", daemon=True)
        start_without_main(self.proc, verifier)
        job_r.close()
        result_w.close()
        self.conns = (job_w, result_r)
        self.out_fd, self.in_fd = job_w.fileno(), result_r.fileno()
        os.set_blocking(self.out_fd, False)  # a worker that stops reading must not block the trainer
        os.set_blocking(self.in_fd, False)
        self.reader, self.outbox = LineReader(), bytearray()
        self.ready, self.protections = False, None
        self.job: deque = deque()  # (index, answer, item) sent and not yet answered
        self.deadline = time.monotonic() + STARTUP_TIMEOUT

    def send(self, chunk: list) -> None:
        self.job.extend(chunk)
        self.outbox += encode_job(chunk)
        self.flush()

    def flush(self) -> None:
        """Write what the pipe takes now; the rest waits for the next poll. OSError: the worker is gone."""
        try:
            while self.outbox:
                del self.outbox[:os.write(self.out_fd, self.outbox)]
        except BlockingIOError:
            pass

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.close_pipes()

    def close_pipes(self) -> None:
        for conn in self.conns:
            conn.close()


class WorkerPool:
    """Scores (index, answer, item) tasks in worker processes; every index gets a Score."""

    def __init__(self, verifier, workers: int, timeout: float, memory_mb: int, policy: SandboxPolicy | None = None):
        self.verifier, self.size, self.timeout, self.memory_mb = verifier, workers, timeout, memory_mb
        self.policy = policy
        # The template kills an answer at `timeout`; the trainer's backstop is for the template itself.
        self.hard_limit = timeout + max(1.0, 0.25 * timeout)
        self.ctx = context()
        if self.ctx.get_start_method() == "forkserver":
            extra = getattr(verifier, "preload_modules", ())
            self.ctx.set_forkserver_preload(["rollwise.verify.sandbox.worker", type(verifier).__module__, *extra])
        self.slots: list[_Worker | None] = [None] * workers
        self.startup_failures = 0
        self.protections: dict | None = None
        self._results: dict[int, Score] = {}
        self._keys: dict[int, object] = {}  # answer index -> its prompt (the breaker's unit)
        self._breaker: Breaker | None = None

    def run(self, tasks: list, deadline: float = math.inf, breaker: Breaker | None = None) -> dict[int, Score]:
        """Score the tasks; answers still unscored at `deadline` or once `breaker` trips are charged."""
        self._results, self._breaker = {}, breaker
        self._keys = {index: getattr(item, "id", index) for index, _, item in tasks}
        size = max(1, min(CHUNK, math.ceil(len(tasks) / (2 * self.size))))
        queue = deque(tasks[i:i + size] for i in range(0, len(tasks), size))
        try:
            while queue or any(w is not None and w.job for w in self.slots):
                if time.monotonic() >= deadline:
                    self._give_up(queue, BUDGET)
                    break
                if breaker is not None and breaker.open:
                    self._skip_open(queue)
                self._assign(queue)
                self._step(queue, deadline)
        except BaseException:  # interrupted mid-chunk: workers hold stale work, start afresh next time
            self.close()
            raise
        return self._results

    def wait_ready(self) -> dict:
        """The protections the first worker reported, starting it if needed."""
        while self.protections is None:
            if not any(self.slots):
                self.slots[0] = _Worker(self.ctx, self.verifier, self.timeout, self.memory_mb, self.policy)
            self._step(deque(), math.inf)
        return self.protections

    def _assign(self, queue: deque) -> None:
        starting = sum(1 for w in self.slots if w is not None and not w.ready)
        for k, w in enumerate(self.slots):
            if w is None and len(queue) > starting:
                self.slots[k] = _Worker(self.ctx, self.verifier, self.timeout, self.memory_mb, self.policy)
                starting += 1
            elif w is not None and w.ready and not w.job and queue:
                chunk = queue.popleft()
                try:
                    w.send(chunk)
                except OSError:  # died while idle: not the fault of any answer
                    w.job.clear()
                    queue.appendleft(chunk)
                    self._replace(k, startup=True)
                    continue
                w.deadline = time.monotonic() + self.hard_limit

    def _step(self, queue: deque, deadline: float) -> None:
        live = [(k, w) for k, w in enumerate(self.slots) if w is not None]
        if not live:
            return
        wake = min(deadline, *(w.deadline for _, w in live))
        poller = select.poll()
        for _, w in live:
            poller.register(w.in_fd, select.POLLIN)
            if w.outbox:
                poller.register(w.out_fd, select.POLLOUT)
        events = dict(poller.poll(min(1.0, max(0.0, wake - time.monotonic())) * 1000))
        for k, w in live:
            try:
                if events.get(w.out_fd, 0) and w.outbox:
                    w.flush()
            except OSError:
                self._fail(k, w, CRASH, queue)
                continue
            if events.get(w.in_fd, 0):
                self._drain(k, w, queue)
        now = time.monotonic()
        for k, w in enumerate(self.slots):
            if w is not None and now >= w.deadline:
                self._fail(k, w, TIMEOUT, queue)

    def _drain(self, k: int, w: _Worker, queue: deque) -> None:
        try:
            data = os.read(w.in_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._fail(k, w, CRASH, queue)
            return
        try:
            for line in w.reader.feed(data):
                self._accept(w, line)
        except ProtocolError as exc:  # the parsers raise nothing else, whatever a line holds
            log.warning("verifier worker broke the protocol (%s): answer charged 'crash', worker replaced", exc)
            self._fail(k, w, CRASH, queue)

    def _accept(self, w: _Worker, line: bytes) -> None:
        """One line from a worker: its ready report, else the result of the answer it is on."""
        if not w.ready:
            w.protections, w.ready, w.deadline, self.startup_failures = parse_ready(line), True, math.inf, 0
            if self.protections is None:
                self.protections = w.protections
                _log_protections(getattr(self.verifier, "name", "?"), w.protections)
            return
        if not w.job:
            raise ProtocolError("a result with no answer outstanding")
        index = w.job[0][0]
        if index in self._results:
            raise ProtocolError(f"a second result for answer {index}")
        score = parse_result(line, index)
        w.job.popleft()
        self._record(index, score)
        w.deadline = time.monotonic() + self.hard_limit if w.job else math.inf

    def _record(self, index: int, score: Score) -> None:
        self._results[index] = score
        if self._breaker is not None:
            self._breaker.record(self._keys[index], score)

    def _skip_open(self, queue: deque) -> None:
        """Charge "breaker" to every unsent answer of a prompt the breaker opened; a worker busy with one
        is killed (the answers it held for other prompts go back to the queue)."""
        chunks = [self._without_open(chunk) for chunk in queue]
        queue.clear()
        queue.extend(chunk for chunk in chunks if chunk)
        for k, w in enumerate(self.slots):
            if w is not None and w.job and self._breaker.tripped(self._keys[w.job[0][0]]):
                rest = self._without_open(w.job)
                w.job.clear()
                if rest:
                    queue.appendleft(rest)
                self._replace(k)

    def _without_open(self, tasks) -> list:
        kept = []
        for task in tasks:
            if self._breaker.tripped(self._keys[task[0]]):
                self._results[task[0]] = failed(BREAKER)
            else:
                kept.append(task)
        return kept

    def _fail(self, k: int, w: _Worker, error: str, queue: deque) -> None:
        """The worker hung, died or broke the protocol: charge its answer, re-send the rest."""
        if w.job:
            index = w.job.popleft()[0]
            self._record(index, failed(error))
            log.info("verifier worker %s on answer %d: killed and replaced", error, index)
        if w.job:
            queue.appendleft(list(w.job))
            w.job.clear()
        self._replace(k, startup=not w.ready)

    def _give_up(self, queue: deque, error: str) -> None:
        """Charge every unscored answer of the batch `error`; busy workers are killed (they restart)."""
        for chunk in queue:
            for index, _, _ in chunk:
                self._results[index] = failed(error)
        queue.clear()
        for k, w in enumerate(self.slots):
            if w is not None and w.job:
                for index, _, _ in w.job:
                    self._results[index] = failed(error)
                w.job.clear()
                self._replace(k)

    def _replace(self, k: int, startup: bool = False) -> None:
        w, self.slots[k] = self.slots[k], None
        w.kill()
        if startup:
            self.startup_failures += 1
            if self.startup_failures >= MAX_STARTUP_FAILURES:
                self.close()
                raise RuntimeError(
                    f"verifier workers keep failing to start (exit code {w.proc.exitcode}): see the traceback on "
                    "stderr above; a script that trains must guard its entry point with "
                    "`if __name__ == '__main__':`")

    def close(self) -> None:
        workers = [w for w in self.slots if w is not None]
        self.slots = [None] * self.size
        for w in workers:  # end of input: each template finishes and the chain exits
            w.close_pipes()
        for w in workers:
            w.proc.join(timeout=0.5)
            w.kill()


def _log_protections(name: str, report: dict) -> None:
    """Once per process and distinct report: what the sandbox achieved (a warning when degraded)."""
    active = sorted(k for k, v in report.items() if v is True)
    summary = f"verifier sandbox for {name}: active {', '.join(active)}"
    if summary in _LOGGED:
        return
    _LOGGED.add(summary)
    if report.get("degraded"):
        log.warning("%s; degraded: %s", summary, report["degraded"])
    else:
        log.info("%s", summary)
