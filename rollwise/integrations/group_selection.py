"""Late selection for trainers that fetch prompts one row at a time and finish groups out of order (verl).

verl's dataloader asks its dataset for one row at a time; its replay buffer collects finished groups
whenever they finish, and with DAPO's group filter it asks for replacement prompts (one row each)
while other groups are still running. So choices and outcomes do not alternate one generation at a
time as in TRL (`LateSelection.choose` / `observe`). `GroupSelection` adapts:

- `take(prompts_per_step)` returns the next prompt id and its sample count. It draws a whole step's
  worth of prompts at once (`prompts_per_step` distinct ids from the freshest posteriors, the
  allocator splitting `prompts_per_step x samples_per_prompt` samples over them) and hands them out
  one by one;
- `observe_groups(ids, successes, trials)` takes the outcomes of any finished groups, in any order
  (several groups of one prompt are summed into one observation). New outcomes void the prompts
  drawn but not yet handed out, so the next `take` draws again from posteriors that include them.

Every handed-out prompt waits with the prediction made when it was drawn until its outcome arrives,
so prediction quality is measured on predictions that never saw the outcome.

    sel = GroupSelection(MoPPSSelector(len(rows)), seed=0, samples_per_prompt=8,
                         allocator=build_allocator(RunConfig(allocator="gvm", gvm_p_source="posterior",
                                                             gvm_min_samples=1), len(rows), predictor))
    pid, n = sel.take(prompts_per_step=16)       # row pid gets n samples
    sel.observe_groups([pid], [3], [n])          # 3 of its n samples were correct

Framework-free (numpy and rollwise's selectors and allocators), so it is unit-tested without verl.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from rollwise.allocate import FixedAllocator
from rollwise.allocate.base import check_ids
from rollwise.integrations.selection import LateSelection


class GroupSelection(LateSelection):
    """A selector, an allocator, a random stream and the prompts handed out and not yet observed."""

    def __init__(self, selector, seed, samples_per_prompt: int, allocator=None, pool_size: int | None = None,
                 keep_records: int = 1000) -> None:
        super().__init__(selector, seed, pool_size=pool_size, keep_records=keep_records)
        if samples_per_prompt < 1:
            raise ValueError(f"samples_per_prompt must be at least 1, got {samples_per_prompt}")
        self.samples_per_prompt = int(samples_per_prompt)
        self.allocator = allocator if allocator is not None else FixedAllocator(self.samples_per_prompt)
        self.queue: deque[tuple[int, int, float]] = deque()  # drawn, not handed out: (id, n, prediction)
        self.waiting: dict[int, deque[float]] = {}  # handed out, no outcome yet: id -> predictions (FIFO)

    def take(self, prompts_per_step: int) -> tuple[int, int]:
        """The next prompt id and how many samples it gets."""
        if not self.queue:
            self._draw_step(prompts_per_step)
        pid, n, predicted = self.queue.popleft()
        self.waiting.setdefault(pid, deque()).append(predicted)
        return pid, n

    def _draw_step(self, k: int) -> None:
        ids, predicted = self.draw(k)
        self.allocator.needs_estimate(ids, self.generation)  # stamps the step on the observations that follow
        counts = np.asarray(self.allocator.allocate(ids, k * self.samples_per_prompt), dtype=np.int64)
        if counts.shape != ids.shape or (counts < 0).any():
            raise RuntimeError(f"allocator {getattr(self.allocator, 'name', self.allocator)} returned {counts.tolist()}"
                               f" for {ids.size} prompts")
        guesses = predicted if predicted is not None else np.full(ids.size, np.nan)
        self.queue.extend((int(i), int(n), float(p)) for i, n, p in zip(ids, counts, guesses))

    def observe_groups(self, ids, successes, trials) -> dict:
        """Outcomes of finished groups (one entry per group, ids may repeat); returns rollwise's metrics."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        successes = np.asarray(successes, dtype=np.float64).reshape(-1)
        trials = np.asarray(trials, dtype=np.float64).reshape(-1)
        if not (ids.shape == successes.shape == trials.shape):
            raise ValueError(f"observe_groups: {ids.size} ids, {successes.size} successes, {trials.size} trials")
        if ids.size == 0:
            return {}
        unique, where = np.unique(ids, return_inverse=True)
        check_ids(unique, self.pool_size)
        s = np.bincount(where, weights=successes, minlength=unique.size)
        k = np.bincount(where, weights=trials, minlength=unique.size)
        groups = np.bincount(where, minlength=unique.size)
        predicted = np.array([self._prediction_of(int(pid), int(n)) for pid, n in zip(unique, groups)])
        self.allocator.observe(unique, s, k, np.full(unique.size, np.nan))  # verl measures no gradient norms
        self._void_queue()
        return self.record(unique, None if np.isnan(predicted).any() else predicted, s, k)

    def _prediction_of(self, pid: int, groups: int) -> float:
        """The prediction made when `pid` was drawn (its first waiting group's); NaN if it never waited here."""
        waiting = self.waiting.get(pid)
        if not waiting:
            return float("nan")
        first = waiting[0]
        for _ in range(min(groups, len(waiting))):
            waiting.popleft()
        if not waiting:
            del self.waiting[pid]
        return first

    def _void_queue(self) -> None:
        """Prompts drawn before these outcomes existed are drawn again, from posteriors that include them."""
        self.queue.clear()

    def state_dict(self) -> dict:
        state = super().state_dict()
        queue = np.array(self.queue, dtype=np.float64).reshape(-1, 3)
        waiting = [(pid, p) for pid, preds in self.waiting.items() for p in preds]
        state.update(allocator=self.allocator.state_dict(), queue=queue,
                     waiting=np.array(waiting, dtype=np.float64).reshape(-1, 2))
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.allocator.load_state_dict(state["allocator"])
        self.queue = deque((int(i), int(n), float(p)) for i, n, p in np.asarray(state["queue"]).reshape(-1, 3))
        self.waiting = {}
        for pid, p in np.asarray(state["waiting"]).reshape(-1, 2):
            self.waiting.setdefault(int(pid), deque()).append(float(p))
