"""Rollout modes: what a training group is sampled from. One registry entry each (`--rollout`).

    full      whole completions from the prompt (the neutral mode)
    partial   RPO: continue a cached path of each prompt, cut by m tokens (rollwise.rollout.rpo, docs/rpo.md)

A mode answers the same calls in every step, so the recipe never asks which mode it has:

    plan(indices, prompt_ids_of, rng, step)   one request per prompt of a generation batch (a PartialPlan:
                                              prefix, suffix budget, whether it continues a cached path)
    record(plan, samples)                     the batch's final samples, for the step's metrics
    finish_step(groups, rng, step)            after the update: refresh what the mode keeps; its metrics
    start(fill)                               before step 1: an up-front fill (RPO's rpo_fill=upfront)

Probe, prefilter and evaluation always sample whole completions (`whole_plan`).
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from rollwise.rollout.engine import GenRequest
from rollwise.rollout.partial import PartialPlan


class RolloutMode(Protocol):
    name: str

    def plan(self, indices: np.ndarray, prompt_ids_of: Callable[[int], list[int]], rng: np.random.Generator,
             step: int) -> PartialPlan: ...

    def record(self, plan: PartialPlan, samples: list[list]) -> None: ...

    def finish_step(self, groups: list, rng: np.random.Generator, step: int) -> dict: ...

    def start(self, fill: Callable) -> dict: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def whole_plan(indices, prompt_ids_of: Callable[[int], list[int]], max_new_tokens: int) -> PartialPlan:
    """Whole completions from each prompt: no prefix, the sampling limit, nothing cached."""
    indices = np.asarray(indices, dtype=np.int64)
    requests = [GenRequest(tuple(prompt_ids_of(int(i))), 1) for i in indices]
    return PartialPlan(requests, np.zeros(indices.size, dtype=np.int64),
                       np.full(indices.size, max_new_tokens, dtype=np.int64), np.zeros(indices.size, dtype=bool),
                       np.full(indices.size, -1, dtype=np.int64))


class WholePaths:
    """The neutral mode: every group samples whole completions; nothing is kept between steps."""

    name = "full"

    def __init__(self, max_new_tokens: int) -> None:
        self.max_new_tokens = max_new_tokens

    def plan(self, indices, prompt_ids_of, rng, step) -> PartialPlan:
        return whole_plan(indices, prompt_ids_of, self.max_new_tokens)

    def record(self, plan, samples) -> None:
        pass

    def finish_step(self, groups, rng, step) -> dict:
        return {}

    def start(self, fill) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class PartialPaths:
    """RPO's partial rollouts (`rollwise.rollout.rpo.PartialRollouts`) as a rollout mode."""

    name = "partial"

    def __init__(self, rpo, upfront_fill: bool) -> None:
        self.rpo, self.upfront_fill = rpo, upfront_fill

    def plan(self, indices, prompt_ids_of, rng, step) -> PartialPlan:
        return self.rpo.plan(indices, prompt_ids_of, rng, step)

    def record(self, plan, samples) -> None:
        self.rpo.record(plan, samples)

    def finish_step(self, groups, rng, step) -> dict:
        """Refresh the cache from every group paid for; the step's rpo_* metrics."""
        return self.rpo.finish_step(groups, rng, step)

    def start(self, fill) -> dict:
        """rpo_fill=upfront: one whole completion per prompt before step 1, cached unverified. `fill(store)`
        generates them and returns (rollouts, tokens, seconds), which the recipe books as training cost."""
        if not self.upfront_fill:
            return {}
        rollouts, tokens, seconds = fill(self.rpo.fill)
        return {"rpo_fill_rollouts": rollouts, "rpo_fill_tokens": tokens, "rpo_fill_seconds": seconds}

    def state_dict(self) -> dict:
        return self.rpo.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rpo.load_state_dict(state)


def whole_paths(cfg, pool_size: int, max_new_tokens: int, eos_token_id: int | None, predictor=None) -> RolloutMode:
    """Whole completions; with rpo_hints, RPO's component without its cache gives hopeless prompts a hint."""
    if cfg.rpo_hints:
        return partial_paths(cfg, pool_size, max_new_tokens, eos_token_id, predictor)
    return WholePaths(max_new_tokens)


def partial_paths(cfg, pool_size: int, max_new_tokens: int, eos_token_id: int | None, predictor=None) -> PartialPaths:
    from rollwise.rollout.rpo import PartialRollouts

    rpo = PartialRollouts.from_config(cfg, pool_size, max_new_tokens, eos_token_id, predictor=predictor)
    return PartialPaths(rpo, upfront_fill=cfg.rpo_fill == "upfront")


def build_rollout_mode(cfg, pool_size: int, max_new_tokens: int, eos_token_id: int | None,
                       predictor=None) -> RolloutMode:
    """The mode `cfg.rollout` names (rollwise.rollout.registry); `predictor` (the run's predictor of prompt
    success) tells RPO's hints which prompts are hopeless."""
    from rollwise.rollout.registry import ROLLOUT_MODES

    return ROLLOUT_MODES.build(cfg.rollout, cfg, pool_size, max_new_tokens, eos_token_id, predictor)
