"""Partial rollouts in a run: the RPO component that plans each generation batch and refreshes its cache.

    collect: plan(indices) --> requests (prompt + cached prefix or hint, suffix budget, whole-path samples)
             --> engine --> record
    train, after the update: finish_step(rolled-out groups) --> refresh the cache, keep correct paths for
             hints, the step's rpo_* metrics

`PartialRollouts` is one stateful part of `rollwise.run.Run` (checkpoint key "rollout", through rollwise.rollout.modes.PartialPaths): its state is
the experience cache (paths and token births), the visits since each path was last wholly rewritten
and, with hints, the correct-path store, all restored exactly; the cut and refresh draws come from the
run's training stream, which is checkpointed too, so a resumed run cuts and refreshes like an
uninterrupted one. The pure pieces (cuts, budgets, the refresh rules, hint lengths, metrics) are in
`rollwise.rollout.partial`, `.refresh` and `.hints`; docs/rpo.md says why each choice was made.

With `continue_cache=False` (rollout=full with hints) no group continues a cached path: the component
only hints, and keeps no experience cache.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from rollwise.allocate.base import BetaPredictor
from rollwise.rollout.cache import ExperienceCache
from rollwise.rollout.hints import PrefixHints
from rollwise.rollout.partial import PartialPlan, answer_ids, partial_requests, rpo_metrics
from rollwise.rollout.refresh import REFRESH_RULES, prefix_births, refresh_paths


class PartialRollouts:
    """The experience cache of a run with `rollout=partial` (or hints) and what a step does with it.

    >>> rpo = PartialRollouts(pool_size=4, cut="half_min", budget="limit", epsilon=0.5, max_new_tokens=8,
    ...                       eos_token_id=1)
    >>> plan = rpo.plan(np.array([2]), lambda i: [9, 9], np.random.default_rng(0), step=1)
    >>> bool(plan.cached[0]), plan.requests[0].prefix_ids   # nothing cached yet: a full group
    (False, ())
    """

    def __init__(self, pool_size: int, cut: int | str, budget: str, epsilon: float, max_new_tokens: int,
                 eos_token_id: int | None, cache_tokens: int = 0, *, refresh: str = "suffix", whole_samples: int = 0,
                 whole_every: int = 0, hints: PrefixHints | None = None, continue_cache: bool = True,
                 stale_steps: int = 50, predictor: BetaPredictor | None = None) -> None:
        if refresh not in REFRESH_RULES or whole_samples < 0 or whole_every < 0:
            raise ValueError(f"PartialRollouts: refresh={refresh!r} (one of {', '.join(REFRESH_RULES)}), "
                             f"whole_samples={whole_samples} and whole_every={whole_every} (>= 0)")
        self.cache = ExperienceCache(pool_size, cache_tokens or None)
        self.cut = cut
        self.budget = budget
        self.epsilon = epsilon
        self.max_new_tokens = max_new_tokens
        self.eos_token_id = eos_token_id
        self.refresh = refresh
        # Whole-path samples and whole groups belong to the whole refresh; the published rule has neither.
        self.whole_samples = whole_samples if refresh == "whole" else 0
        self.whole_every = whole_every if refresh == "whole" else 0
        self.hints = hints
        self.continue_cache = continue_cache
        self.stale_steps = stale_steps
        self.predictor = predictor
        self.since_whole = np.zeros(pool_size, dtype=np.int64)  # visits since the path was last wholly rewritten
        self._plans: list[PartialPlan] = []  # this step's generation batches (metrics only, never saved)
        self._samples: list[list] = []

    @classmethod
    def from_config(cls, cfg, pool_size: int, max_new_tokens: int, eos_token_id: int | None,
                    predictor: BetaPredictor | None = None) -> "PartialRollouts":
        cut = cfg.rpo_cut_rule
        if 0 < cfg.rpo_cache_tokens < max_new_tokens:
            raise ValueError(f"rpo_cache_tokens={cfg.rpo_cache_tokens} cannot hold one path of max_new_tokens="
                             f"{max_new_tokens} tokens: raise it (or 0: unbounded)")
        hints = PrefixHints(pool_size, cfg.rpo_hint_below, cfg.rpo_hint_target, cfg.rpo_cache_tokens or None,
                            cfg.mopps_decay) if cfg.rpo_hints else None
        return cls(pool_size, cut, cfg.rpo_suffix_budget, cfg.rpo_refresh_epsilon, max_new_tokens, eos_token_id,
                   cfg.rpo_cache_tokens, refresh=cfg.rpo_refresh, whole_samples=cfg.rpo_whole_samples,
                   whole_every=cfg.rpo_whole_every, hints=hints, continue_cache=cfg.rollout == "partial",
                   stale_steps=cfg.rpo_stale_steps, predictor=predictor)

    def attach_predictor(self, predictor: BetaPredictor | None) -> None:
        """Read whole-path success from `predictor` (the run's shared one) instead of the hints' own Beta."""
        self.predictor = predictor

    # ------------------------------------------------------------------------------------ one batch

    def plan(self, indices: np.ndarray, prompt_ids_of: Callable[[int], list[int]], rng: np.random.Generator,
             step: int) -> PartialPlan:
        """One cut per prompt of a generation batch (sample counts are set per rollout: `with_counts`).

        Hinted prompts first (no draw), then every `whole_every`-th visit a whole group, then the cuts
        of the rest, drawn for the cached ones in the order of `indices`.
        """
        indices = np.asarray(indices, dtype=np.int64)
        hinted = self._hints(indices)
        usable = np.full(indices.size, self.continue_cache) & ~np.isin(np.arange(indices.size), list(hinted))
        if self.whole_every:
            usable &= self.since_whole[indices] < self.whole_every - 1
        plan = partial_requests(self.cache, indices, prompt_ids_of, 1, self.cut, rng, step=step,
                                max_new_tokens=self.max_new_tokens, budget=self.budget,
                                eos_token_id=self.eos_token_id, usable=usable)
        plan.whole = np.where(plan.cached, self.whole_samples, 0).astype(np.int64)
        ages = self.hints.ages(indices, step) if hinted else None
        for pos, prefix in hinted.items():
            plan.requests[pos] = replace(plan.requests[pos], prefix_ids=prefix,
                                         max_new_tokens=self.max_new_tokens - len(prefix))
            plan.budgets[pos] = self.max_new_tokens - len(prefix)
            plan.cached[pos], plan.hinted[pos], plan.ages[pos] = True, True, ages[pos]
        return plan

    def _hints(self, indices: np.ndarray) -> dict[int, tuple[int, ...]]:
        if self.hints is None or indices.size == 0:
            return {}
        predictor = self.predictor if self.predictor is not None else self.hints.whole
        return self.hints.pick(indices, np.asarray(predictor.mean(indices), dtype=np.float64))

    def record(self, plan: PartialPlan, samples: list[list]) -> None:
        """Keep a generation batch's plan and final samples (merged pre-samples included) for the metrics."""
        self._plans.append(plan)
        self._samples.extend(samples)

    # ------------------------------------------------------------------------------------ the step

    def finish_step(self, groups: list, rng: np.random.Generator, step: int) -> dict:
        """Refresh the cache from every rolled-out group (their final, shaped rewards); the step's metrics.

        The metrics describe this step's generation batches and the cache after the refresh. Hinted groups
        refresh no cached path; with hints, every group's correct answer is kept for later hints.
        """
        hinted = {g.index for g in groups if any(s.masked_prefix > 0 for s in g.samples)}
        row = {}
        if self.hints is not None:
            row["rpo_hint_paths_kept"] = self.hints.record(groups, step, lambda g, s: self._births_of(g, s, hinted,
                                                                                                     step))
            self.hints.whole.observe_groups(groups, skip=hinted)
            rates = [float(np.mean(g.acc)) for g in groups if g.index in hinted and len(g.acc)]
            self.hints.adapt(rates)
            row["rpo_hint_acc"] = float(np.mean(rates)) if rates else None
            row["rpo_hint_shift"] = self.hints.shift
        refreshed = 0
        if self.continue_cache:
            ids, whole = refresh_paths(self.cache, [g for g in groups if g.index not in hinted], rng, step,
                                       self.epsilon, self.refresh)
            self.since_whole[ids] = np.where(whole, 0, self.since_whole[ids] + 1)
            refreshed = ids.size
            row["rpo_refreshed_whole"] = int(whole.sum())
        row = {**rpo_metrics(PartialPlan.concat(self._plans), self._samples, self.cache, step, self.stale_steps),
               **row, "rpo_refreshed": refreshed}
        if self.hints is not None:
            row["rpo_hint_paths"] = len(self.hints.correct)
        self._plans, self._samples = [], []
        return row

    def _births_of(self, group, sample, hinted: set, step: int) -> np.ndarray:
        source = self.hints.correct if group.index in hinted else self.cache
        return prefix_births(source, group.index, len(sample.prefix_ids), step)

    def fill(self, ids: np.ndarray, samples: list[list], step: int) -> None:
        """Store one engine sample per prompt (the up-front fill)."""
        self.cache.put_many(np.asarray(ids, dtype=np.int64), [answer_ids(group[0]) for group in samples], step)

    def state_dict(self) -> dict:
        state = {"cache": self.cache.state_dict(), "since_whole": self.since_whole.copy()}
        if self.hints is not None:
            state["hints"] = self.hints.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.cache.load_state_dict(state["cache"])
        self.since_whole = np.asarray(state.get("since_whole", np.zeros_like(self.since_whole)), dtype=np.int64).copy()
        if self.hints is not None:
            if "hints" not in state:
                raise ValueError("the checkpoint has no hint store (written without rpo_hints): resume with the "
                                 "settings it was written with")
            self.hints.load_state_dict(state["hints"])
        self._plans, self._samples = [], []
