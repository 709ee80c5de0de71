"""Partial rollouts in a run: the RPO component that plans each generation batch and refreshes its cache.

    collect: plan(indices) --> requests (prompt + cached prefix, suffix budget) --> engine --> record
    train, after the update: finish_step(rolled-out groups) --> refresh the cache, the step's rpo_* metrics

`PartialRollouts` is one stateful part of `rollwise.run.Run` (checkpoint key "rollout", through rollwise.rollout.modes.PartialPaths): its state is
the experience cache, restored exactly; the cut and refresh draws come from the run's training stream,
which is checkpointed too, so a resumed run cuts and refreshes like an uninterrupted one. The pure
pieces (cuts, budgets, the refresh rule, metrics) are in `rollwise.rollout.partial`; docs/rpo.md says
why each choice was made.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from rollwise.rollout.cache import ExperienceCache
from rollwise.rollout.partial import PartialPlan, answer_ids, parse_cut, partial_requests, refresh_cache, rpo_metrics


class PartialRollouts:
    """The experience cache of a run with `rollout=partial` and what a step does with it.

    >>> rpo = PartialRollouts(pool_size=4, cut="half_min", budget="limit", epsilon=0.5, max_new_tokens=8,
    ...                       eos_token_id=1)
    >>> plan = rpo.plan(np.array([2]), lambda i: [9, 9], np.random.default_rng(0), step=1)
    >>> bool(plan.cached[0]), plan.requests[0].prefix_ids   # nothing cached yet: a full group
    (False, ())
    """

    def __init__(self, pool_size: int, cut: int | str, budget: str, epsilon: float, max_new_tokens: int,
                 eos_token_id: int | None, cache_tokens: int = 0) -> None:
        self.cache = ExperienceCache(pool_size, cache_tokens or None)
        self.cut = cut
        self.budget = budget
        self.epsilon = epsilon
        self.max_new_tokens = max_new_tokens
        self.eos_token_id = eos_token_id
        self._plans: list[PartialPlan] = []  # this step's generation batches (metrics only, never saved)
        self._samples: list[list] = []

    @classmethod
    def from_config(cls, cfg, pool_size: int, max_new_tokens: int, eos_token_id: int | None) -> "PartialRollouts":
        cut = parse_cut(cfg.rpo_cut)
        if 0 < cfg.rpo_cache_tokens < max_new_tokens:
            raise ValueError(f"rpo_cache_tokens={cfg.rpo_cache_tokens} cannot hold one path of max_new_tokens="
                             f"{max_new_tokens} tokens: raise it (or 0: unbounded)")
        return cls(pool_size, cut, cfg.rpo_suffix_budget, cfg.rpo_refresh_epsilon, max_new_tokens, eos_token_id,
                   cfg.rpo_cache_tokens)

    # ------------------------------------------------------------------------------------ one batch

    def plan(self, indices: np.ndarray, prompt_ids_of: Callable[[int], list[int]], rng: np.random.Generator,
             step: int) -> PartialPlan:
        """One cut per prompt of a generation batch (sample counts are set per rollout: `with_counts`)."""
        return partial_requests(self.cache, indices, prompt_ids_of, 1, self.cut, rng, step=step,
                                max_new_tokens=self.max_new_tokens, budget=self.budget, eos_token_id=self.eos_token_id)

    def record(self, plan: PartialPlan, samples: list[list]) -> None:
        """Keep a generation batch's plan and final samples (merged pre-samples included) for the metrics."""
        self._plans.append(plan)
        self._samples.extend(samples)

    # ------------------------------------------------------------------------------------ the step

    def finish_step(self, groups: list, rng: np.random.Generator, step: int) -> dict:
        """Refresh the cache from every rolled-out group (their final, shaped rewards); the step's metrics.

        The metrics describe this step's generation batches and the cache after the refresh.
        """
        refreshed = refresh_cache(self.cache, groups, rng, step, self.epsilon)
        row = rpo_metrics(PartialPlan.concat(self._plans), self._samples, self.cache)
        row["rpo_refreshed"] = refreshed
        self._plans, self._samples = [], []
        return row

    def fill(self, ids: np.ndarray, samples: list[list], step: int) -> None:
        """Store one engine sample per prompt (the up-front fill)."""
        self.cache.put_many(np.asarray(ids, dtype=np.int64), [answer_ids(group[0]) for group in samples], step)

    def state_dict(self) -> dict:
        return {"cache": self.cache.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.cache.load_state_dict(state["cache"])
        self._plans, self._samples = [], []
