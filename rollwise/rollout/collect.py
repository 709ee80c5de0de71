"""The rollout phases of a step: allocate, generate, verify; and the groups they produce.

    allocate --> (pre-samples, n_i) --> generate --> verify --> Group (acc, rewards per sample)

The recipe (`rollwise.train`) calls these in order for every generation batch. Whole completions and
RPO's partial rollouts go through the same calls: a generation batch always has a plan (one request
per prompt: its prefix, suffix budget and whether it continues a cached path; `rollwise.rollout.modes`).

Allocation (docs/methods.md section 3): the batch's budget is n x (prompts). An allocator that estimates
(GVM with pre-samples) first rolls out `presamples` completions of the prompts it marks; those
pre-samples are part of their prompt's group and of the budget, so every allocator spends exactly the
same rollouts per generation batch. A prompt allotted no sample drops out of the step. A prompt's
pre-samples and main samples continue the same planned prefix and form one group. Reward shaping
(`RolloutContext.shaping`) runs on the merged groups and changes rewards only (the selector, the
allocator and the filter read acc).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from rollwise.rollout.engine import SamplingParams
from rollwise.rollout.partial import PartialPlan
from rollwise.rollout.shaping import RewardShaping
from rollwise.track import Timer


@dataclass
class Group:
    """The samples of one prompt in one step, with their verified outcomes."""

    index: int  # position in the pool
    samples: list
    acc: np.ndarray
    rewards: np.ndarray
    clipped_tokens: int = 0  # generated past a request's limit by an engine that ignores it, then cut off
    # False where the verifier never judged the sample (timeout, budget, breaker): masked out of the loss,
    # the advantages' group statistics, the predictor's, selector's and allocator's counts and the filter
    # (unknown, not wrong: rollwise.rollout.scored).
    scored: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.scored is None:
            self.scored = np.ones(len(self.acc), dtype=bool)

    @property
    def successes(self) -> float:
        return float(self.acc[self.scored].sum())

    @property
    def trials(self) -> int:
        """Scored samples: what an observation of this prompt counts."""
        return int(self.scored.sum())

    @property
    def unscored(self) -> int:
        return len(self.acc) - self.trials

    @property
    def tokens(self) -> int:
        """Generated tokens (a partial rollout's prefix was not generated: see `prefix_tokens`)."""
        return sum(s.generated_tokens for s in self.samples) + self.clipped_tokens

    @property
    def prefix_tokens(self) -> int:
        return sum(len(s.prefix_ids) for s in self.samples)


def outcomes(groups: list[Group]) -> tuple[np.ndarray, np.ndarray]:
    """Verified successes and trials per group, over its scored samples only."""
    return np.array([g.successes for g in groups]), np.array([g.trials for g in groups])


class _NoOutcomeLog:
    """Stands in for the outcome log where nothing is recorded (library use without a run directory)."""

    def write(self, step, kind, ids, successes, trials) -> None:
        pass


def _no_grad_norms(samples: list) -> np.ndarray:
    return np.full(len(samples), np.nan)


@dataclass
class RolloutContext:
    """What rolling out needs: the pool, the policy's codec and engine, the guarded verifier, and where the
    verified outcomes go (the run's outcome log)."""

    pool: object
    codec: object
    engine: object
    verifier: object
    params: SamplingParams
    reward: str  # "acc" or "score"
    grad_norms: Callable[[list], np.ndarray] = _no_grad_norms  # per-sample G for allocators that need it
    shaping: RewardShaping = field(default_factory=RewardShaping.identity)  # training rollouts only
    outcomes: object = field(default_factory=_NoOutcomeLog)  # rollwise.predict.outcomes.OutcomeLog

    def prompt_ids(self, index: int) -> list[int]:
        return self.codec.prompt_ids(self.pool[int(index)])

    def log(self, step: int, kind: str, groups: list[Group], mask=None) -> None:
        """Record verified groups in the outcome log (`mask` picks some); a group without scored samples has none."""
        mask = np.ones(len(groups), dtype=bool) if mask is None else mask
        picked = [g for g, m in zip(groups, mask) if m and g.trials > 0]
        successes, trials = outcomes(picked)
        self.outcomes.write(step, kind, [g.index for g in picked], successes, trials)


# ---------------------------------------------------------------------------- generate and verify


def generate(ctx: RolloutContext, plan: PartialPlan, counts, timer: Timer) -> tuple[list[list], list[int]]:
    """counts[i] samples for each planned request, each cut to its budget; returns the samples and the
    tokens cut off per group (generated all the same: a no-op for engines that honour request limits)."""
    with timer("gen"):
        samples = ctx.engine.generate(plan.with_counts(counts), ctx.params)
    return plan.finish(samples)  # whole-path samples of a partial plan merged back into their groups


def verify_samples(codec, verifier, items: list, samples: list[list]) -> list[list]:
    """Scores of every sample (prefix + completion decoded as one answer), grouped as `samples`."""
    answers, flat_items = [], []
    for item, group in zip(items, samples):
        for s in group:
            answers.append(codec.answer(codec.decode(list(s.prefix_ids) + s.completion_ids)))
            flat_items.append(item)
    scores = verifier.score_batch(answers, flat_items)
    grouped, pos = [], 0
    for group in samples:
        grouped.append(scores[pos : pos + len(group)])
        pos += len(group)
    return grouped


def verify(ctx: RolloutContext, indices: np.ndarray, samples: list[list], clipped: list[int],
           timer: Timer) -> list[Group]:
    """One verified group per pool index (acc from the guarded verifier; rewards acc or its score)."""
    with timer("verify"):
        scores = verify_samples(ctx.codec, ctx.verifier, [ctx.pool[i] for i in indices], samples)
    groups = []
    for index, group, part, extra in zip(indices, samples, scores, clipped):
        acc = np.array([sc.acc for sc in part], dtype=np.float64)
        rewards = acc.copy() if ctx.reward == "acc" else np.array([sc.reward for sc in part], dtype=np.float64)
        groups.append(Group(int(index), group, acc, rewards, extra, np.array([sc.scored for sc in part], dtype=bool)))
    return groups


def roll_out(ctx: RolloutContext, indices: np.ndarray, n, timer: Timer, plan: PartialPlan) -> list[Group]:
    """Generate n[i] samples for each pool index along the plan, and verify them."""
    counts = np.broadcast_to(np.asarray(n), np.asarray(indices).shape)
    samples, clipped = generate(ctx, plan, counts, timer)
    return verify(ctx, indices, samples, clipped, timer)


# ---------------------------------------------------------------------------- allocate


@dataclass
class Allocation:
    """The samples each prompt of a generation batch gets, and the pre-samples already paid for."""

    counts: np.ndarray  # n_i of the main rollout
    presampled: dict[int, Group]  # pool index -> its pre-sample group (GVM's estimation pass)


def allocate(ctx: RolloutContext, allocator, indices: np.ndarray, plan: PartialPlan, n_avg: int, step: int,
             timer: Timer) -> Allocation:
    """The allocator's n_i for a batch of n_avg x prompts samples, pre-samples included."""
    budget = n_avg * len(indices)
    estimate = np.asarray(allocator.needs_estimate(indices, step), dtype=bool) & (allocator.presamples > 0)
    marked, pre_groups = indices[estimate], []
    if marked.size:  # an estimation pass: part of each marked prompt's group and of the budget
        pre_groups = roll_out(ctx, marked, allocator.presamples, timer, plan.take(np.flatnonzero(estimate)))
        norms = group_grad_norms(ctx, pre_groups, timer) if allocator.needs_grad_norms else \
            np.full(marked.size, np.nan)
        allocator.observe(marked, *outcomes(pre_groups), norms)
        ctx.log(step, "presample", pre_groups)
        budget -= allocator.presamples * len(marked)
    return Allocation(allocator.allocate(indices, budget), {g.index: g for g in pre_groups})


def group_grad_norms(ctx: RolloutContext, groups: list[Group], timer: Timer) -> np.ndarray:
    """Mean gradient norm over each group's correct samples (NaN without one, or without a measure)."""
    correct = [(i, s) for i, g in enumerate(groups) for s, a in zip(g.samples, g.acc) if a > 0]
    out = np.full(len(groups), np.nan)
    if not correct:
        return out
    with timer("gradnorm"):
        norms = ctx.grad_norms([s for _, s in correct])
    owner = np.array([i for i, _ in correct])
    sums = np.bincount(owner, weights=norms, minlength=len(groups))
    counts = np.bincount(owner, minlength=len(groups))
    out[counts > 0] = sums[counts > 0] / counts[counts > 0]
    return out


def merge_presamples(ctx: RolloutContext, allocation: Allocation, main: list[Group]) -> list[Group]:
    """Each prompt's one group: its pre-samples and main samples, rewards shaped over the whole group."""
    merged = [_merge(allocation.presampled.get(g.index), g) for g in main]
    return [replace(g, rewards=ctx.shaping.rewards(g)) for g in merged]


def _merge(first: Group | None, second: Group) -> Group:
    if first is None:
        return second
    return Group(second.index, first.samples + second.samples, np.concatenate([first.acc, second.acc]),
                 np.concatenate([first.rewards, second.rewards]), first.clipped_tokens + second.clipped_tokens,
                 np.concatenate([first.scored, second.scored]))


def fill_whole(ctx: RolloutContext, indices: np.ndarray, plan: PartialPlan, step: int, store: Callable,
               timer: Timer) -> tuple[int, int]:
    """One whole, unverified completion per prompt handed to `store(ids, samples, step)` (RPO's up-front
    fill); returns (rollouts, tokens), which the recipe books as training cost."""
    samples, _ = generate(ctx, plan, 1, timer)
    store(indices, samples, step)
    return len(indices), sum(s.generated_tokens for group in samples for s in group)


# ---------------------------------------------------------------------------- one step's groups


@dataclass
class StepGroups:
    """Every group a step paid for (`rolled_out`) and those the filter kept, over its generation batches."""

    pool_size: int
    kept: list[Group] = field(default_factory=list)
    rolled_out: list[Group] = field(default_factory=list)
    predictions: list[np.ndarray] = field(default_factory=list)
    gen_batches: int = 0
    presampled: int = 0  # prompts that paid an estimation pass (their pre-samples are in their groups)
    unallocated: int = 0  # selected prompts that the allocator gave no sample
    capped: bool = False  # the filter's cap of generation batches stopped the step short of B kept groups
    used: np.ndarray = None

    def __post_init__(self) -> None:
        self.used = np.zeros(self.pool_size, dtype=bool)

    def candidates(self) -> np.ndarray:
        """Prompts not yet drawn this step (a prompt is never rolled out twice in one step)."""
        return np.flatnonzero(~self.used)

    def wants_batch(self, group_filter, batch_prompts: int) -> bool:
        return (self.gen_batches < group_filter.max_gen_batches and len(self.kept) < batch_prompts
                and bool((~self.used).any()))

    def add(self, groups: list[Group], group_filter) -> None:
        self.rolled_out.extend(groups)
        self.kept.extend(g for g in groups if group_filter.keep(g.acc[g.scored]))

    def finish(self, group_filter, batch_prompts: int) -> None:
        """The step trains on at most B kept groups; say whether it had fewer than it wanted."""
        self.capped = len(self.kept) < batch_prompts and group_filter.max_gen_batches > 1
        self.kept = self.kept[:batch_prompts]

    def predicted(self) -> np.ndarray | None:
        """The selector's predictions for every rolled-out group, made before observing them."""
        if not self.predictions or len(self.predictions) != self.gen_batches:
            return None
        return np.concatenate(self.predictions)

    @property
    def rollouts(self) -> int:
        return sum(len(g.samples) for g in self.rolled_out)

    @property
    def tokens(self) -> int:
        return sum(g.tokens for g in self.rolled_out)

    @property
    def prefix_tokens(self) -> int:
        return sum(g.prefix_tokens for g in self.rolled_out)

    @property
    def unscored(self) -> int:
        return sum(g.unscored for g in self.rolled_out)
