"""The verifier guard: every answer is scored here, and hostile answers cannot hurt the run.

Model output is untrusted (docs/sandbox.md). Three layers:

1. A cheap pre-check refuses text no verifier should see: longer than `max_chars`, NUL bytes,
   lone surrogates (invalid UTF-8 decoded with surrogateescape).
2. Verifiers marked `in_process_safe` (our own bounded, eval-free scorers) and `quick_score`
   fast paths run in the training process: the hot path, microseconds per answer.
3. Everything else runs in sandboxed worker processes (docs/sandbox.md): each worker is a
   pre-imported template in its own namespaces, read-only files, uid 65534, hard limits and a
   seccomp filter (`rollwise.verify.sandbox.policy`), which forks one child per answer
   (`rollwise.verify.sandbox.worker`), so no answer runs where an earlier one ran. Results come back
   through a strict byte protocol (`rollwise.verify.sandbox.protocol`), never pickles; the trainer's side
   (`rollwise.verify.sandbox.supervisor`) checks every result and replaces a worker that breaks it.

A batch has a time budget (`batch_budget` seconds) and a circuit breaker per prompt (once one
prompt's answers have `breaker_timeouts` timeouts that are at least `breaker_rate` of its finished
answers, the rest of that prompt's answers are skipped), so slow answers cannot stall a training
step, and one prompt's slow answers cost that prompt only. Answers not scored for time ("timeout",
"budget", "breaker": `Score.scored` is False) are unknown, not wrong: training masks them out
(`rollwise.rollout.scored`).

Score.error says what happened: "rejected" (pre-check), "timeout", "crash" (worker died or broke
the protocol), "memory", "blocked" (a refused system call or side effect), "error" (the scorer
raised), "budget" (the batch ran out of time), "breaker" (the breaker had tripped).
`pop_counts()` groups them as timeouts, errors, rejected, budget_exceeded and breaker_tripped
(numbers of answers). `protections` says what the workers' sandbox measured at start-up. Scripts
using worker verifiers need the usual multiprocessing `if __name__ == "__main__":` guard.

    with GuardedVerifier(build_verifier("file", "math"), workers=2, timeout=5.0) as v:
        scores = v.score_batch(answers, items)
        v.pop_counts()   # {"timeouts": 0, "errors": 0, "rejected": 0, "budget_exceeded": 0, ...}
        v.protections    # {"pid_namespace": True, "seccomp": True, "uid": 65534, ...}
"""

from __future__ import annotations

import functools
import logging
import math
import pickle
import time
from dataclasses import dataclass

from rollwise.data.pool import PoolItem
from rollwise.verify.base import WRONG, Score
from rollwise.verify.sandbox.protocol import (BLOCKED, BREAKER, BUDGET, CRASH, ERROR, MEMORY, REJECTED, TIMEOUT,
                                              checked, failed)
from rollwise.verify.sandbox.settings import SandboxPolicy
from rollwise.verify.sandbox.supervisor import Breaker, WorkerPool

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 10_000
BATCH_BUDGET = 60.0  # seconds a batch may spend in workers; a training step normally needs well under one
BREAKER_TIMEOUTS, BREAKER_RATE = 2, 0.25  # per prompt: two timeouts in a group of up to eight

COUNTER_OF = {TIMEOUT: "timeouts", CRASH: "errors", ERROR: "errors", MEMORY: "errors", BLOCKED: "errors",
              REJECTED: "rejected", BUDGET: "budget_exceeded", BREAKER: "breaker_tripped"}
COUNTERS = ("timeouts", "errors", "rejected", "budget_exceeded", "breaker_tripped")


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
    """Scores batches of answers through a verifier, in-process when safe, else in sandboxed workers.

    Results are in input order and do not depend on chunking or the number of workers.
    `pop_counts()` returns and resets the counters (see COUNTERS). batch_budget (seconds, None: no
    budget) bounds the time one `score_batch` spends in workers; breaker_timeouts (None: no
    breaker) and breaker_rate set when the rest of one prompt's answers (items with the same id)
    are skipped. `sandbox` chooses which
    OS protections to attempt (default: all the kernel allows).
    """

    def __init__(self, verifier, workers: int = 2, timeout: float = 5.0, memory_mb: int = 1024,
                 max_chars: int = MAX_ANSWER_CHARS, batch_budget: float | None = BATCH_BUDGET,
                 breaker_timeouts: int | None = BREAKER_TIMEOUTS, breaker_rate: float = BREAKER_RATE,
                 sandbox: SandboxPolicy | None = None):
        if workers < 1 or timeout <= 0 or memory_mb < 64:
            raise ValueError(f"verify workers must be >= 1, timeout > 0 and memory >= 64 MB; got {workers}, "
                             f"{timeout}, {memory_mb}")
        if (batch_budget is not None and batch_budget <= 0) or (breaker_timeouts is not None and breaker_timeouts < 1):
            raise ValueError(f"batch_budget must be > 0 and breaker_timeouts >= 1 (or None to switch them off); "
                             f"got {batch_budget}, {breaker_timeouts}")
        self.verifier = verifier
        self.name = getattr(verifier, "name", type(verifier).__name__)
        self.in_process_safe = bool(getattr(verifier, "in_process_safe", False))
        self.workers, self.timeout, self.memory_mb, self.max_chars = workers, float(timeout), memory_mb, max_chars
        self.batch_budget, self.breaker_timeouts, self.breaker_rate = batch_budget, breaker_timeouts, breaker_rate
        self.sandbox = sandbox
        self._quick = getattr(verifier, "quick_score", None)
        self._pool: WorkerPool | None = None
        self._counts = dict.fromkeys(COUNTERS, 0)
        if not self.in_process_safe:
            try:
                pickle.dumps(verifier)
            except Exception as exc:
                raise ValueError(f"verifier {self.name!r} cannot be sent to worker processes: {exc}") from exc

    @property
    def protections(self) -> dict:
        """What the workers' sandbox measured at start-up (name -> bool / int / str); starts one if needed.

        In-process-safe verifiers have no workers: {"sandbox": False, "in_process_safe": True}.
        """
        if self.in_process_safe:
            return {"sandbox": False, "in_process_safe": True}
        return {"sandbox": True, **self._workers().wait_ready()}

    def score(self, answer: str | None, item: PoolItem) -> Score:
        return self.score_batch([answer], [item])[0]

    def score_batch(self, answers: list[str | None], items: list[PoolItem]) -> list[Score]:
        if len(answers) != len(items):
            raise ValueError(f"score_batch got {len(answers)} answers for {len(items)} items")
        deadline = time.monotonic() + self.batch_budget if self.batch_budget is not None else math.inf
        scores = [self._score_here(a, it) for a, it in zip(answers, items)]
        remote = [(i, answers[i], items[i]) for i, s in enumerate(scores) if s is None]
        if remote:
            breaker = Breaker(self.breaker_timeouts, self.breaker_rate)
            for i, s in self._workers().run(remote, deadline, breaker).items():
                scores[i] = s
        for s in scores:
            if s.error in COUNTER_OF:
                self._counts[COUNTER_OF[s.error]] += 1
        return scores

    def _workers(self) -> WorkerPool:
        if self._pool is None:
            self._pool = WorkerPool(self.verifier, self.workers, self.timeout, self.memory_mb, self.sandbox)
        return self._pool

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


@dataclass(frozen=True)
class ProbeVerifier:
    """A verifier that scores nothing: used to start a sandbox only to read its protections."""

    name: str = "probe"
    in_process_safe = False

    def score(self, answer, item):
        return WRONG


@functools.lru_cache(maxsize=None)
def _probe() -> tuple:
    with GuardedVerifier(ProbeVerifier(), workers=1) as guard:
        return tuple(guard.protections.items())


def protections() -> dict:
    """What the verifier sandbox achieves on this machine: name -> bool / int / str.

    Starts one throwaway worker (about a second) and returns the report it measured from inside;
    cached for the process. `degraded` lists what the kernel refused ("" when nothing).
    """
    return dict(_probe())
