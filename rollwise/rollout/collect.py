"""One step's data: select prompts, allocate samples, roll out, verify, filter; repeat while the filter asks.

    select --> allocate (pre-samples, n_i) --> rollout --> verify --> observe (selector, allocator)
           --> filter --> kept groups

The selector observes every group it paid for, including groups the filter discards, and its
prediction is read before that observation (prediction quality must not peek at the outcome).

Allocation (METHODS.md section 3): the step's budget is n x (prompts). An allocator that estimates
(GVM with pre-samples) first rolls out `presamples` completions of the prompts it marks; those
pre-samples are part of their prompt's group and of the budget, so every allocator spends exactly
the same rollouts per generation batch. A prompt allotted no sample drops out of the step.

Partial rollouts (RPO, `ctx.partial`): each generation batch gets one plan, one cut per prompt, built
before GVM's estimation pass, so a prompt's pre-samples and main samples continue the same cached
prefix and form one group. Probe, prefilter and evaluation call `roll_out` without a plan: whole
completions. Reward shaping (`ctx.shaping`) runs on the merged groups, before the filter, and changes
rewards only (the selector, the allocator and the filter read acc).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from rollwise.rollout.engine import GenRequest, SamplingParams
from rollwise.rollout.partial import PartialPlan
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
    # the advantages' group statistics, the selector's and allocator's counts and the filter (not wrong).
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


@dataclass
class Collected:
    kept: list[Group]
    rolled_out: list[Group]
    gen_batches: int
    capped: bool
    predicted: np.ndarray | None  # selector prediction for rolled_out, before observing them
    verify_counts: dict = field(default_factory=dict)
    presampled: int = 0  # prompts that paid an estimation pass (their pre-samples are in their groups)
    unallocated: int = 0  # selected prompts that the allocator gave no sample

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


@dataclass
class RolloutContext:
    """What rolling out needs: the pool, the policy's codec and engine, the guarded verifier."""

    pool: object
    codec: object
    engine: object
    verifier: object
    params: SamplingParams
    reward: str  # "acc" or "score"
    grad_norms: Callable[[list], np.ndarray] | None = None  # per-sample G for allocators that need it
    partial: object | None = None  # rollwise.rollout.rpo.PartialRollouts with rollout=partial
    shaping: object | None = None  # rollwise.rollout.shaping.RewardShaping (training rollouts only)


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


def roll_out(ctx: RolloutContext, indices: np.ndarray, n: np.ndarray | int, timer: Timer,
             plan: PartialPlan | None = None) -> list[Group]:
    """Sample n[i] completions for each pool index and verify them; with a plan (aligned with indices),
    continue each prompt's cached prefix within its suffix budget (partial rollouts)."""
    counts = np.broadcast_to(np.asarray(n), indices.shape)
    items = [ctx.pool[i] for i in indices]
    if plan is None:
        requests = [GenRequest(tuple(ctx.codec.prompt_ids(it)), int(k)) for it, k in zip(items, counts)]
    else:
        requests = plan.with_counts(counts)
    with timer("gen"):
        samples = ctx.engine.generate(requests, ctx.params)
    clipped = [0] * len(samples)
    if plan is not None:  # a no-op for engines that honour request limits (HFEngine does)
        samples, clipped = _clip_groups(plan, samples)
    with timer("verify"):
        scores = verify_samples(ctx.codec, ctx.verifier, items, samples)
    groups = []
    for index, group, part, extra in zip(indices, samples, scores, clipped):
        acc = np.array([sc.acc for sc in part], dtype=np.float64)
        rewards = acc.copy() if ctx.reward == "acc" else np.array([sc.reward for sc in part], dtype=np.float64)
        groups.append(Group(int(index), group, acc, rewards, extra, np.array([sc.scored for sc in part], dtype=bool)))
    return groups


def _clip_groups(plan: PartialPlan, samples: list[list]) -> tuple[list[list], list[int]]:
    """Each group cut to its budget, and the tokens cut off per group (generated all the same)."""
    out, dropped = [], []
    for i, group in enumerate(samples):
        kept, extra = plan.take([i]).clip([group])
        out.append(kept[0])
        dropped.append(extra)
    return out, dropped


def roll_out_allocated(ctx: RolloutContext, indices: np.ndarray, allocator, n_avg: int, step: int,
                       timer: Timer, rng: np.random.Generator | None = None) -> tuple[list[Group], int]:
    """Roll out `indices` with the allocator's n_i (budget n_avg per prompt on average, pre-samples included).

    Returns one group per index (possibly empty) and the number of prompts that were pre-sampled. With
    partial rollouts the batch's plan (cuts drawn from `rng`) serves the pre-samples and the main rollout.
    """
    plan = None
    if ctx.partial is not None:
        plan = ctx.partial.plan(indices, lambda i: ctx.codec.prompt_ids(ctx.pool[i]), rng, step)
    budget = n_avg * len(indices)
    estimate = np.asarray(allocator.needs_estimate(indices, step), dtype=bool) & (allocator.presamples > 0)
    pre: dict[int, Group] = {}
    if estimate.any():
        marked = indices[estimate]
        pre_groups = roll_out(ctx, marked, allocator.presamples, timer,
                              plan.take(np.flatnonzero(estimate)) if plan is not None else None)
        allocator.observe(marked, *_outcomes(pre_groups), _group_grad_norms(ctx, pre_groups, timer))
        pre = {g.index: g for g in pre_groups}
        budget -= allocator.presamples * len(marked)
    counts = allocator.allocate(indices, budget)
    main = roll_out(ctx, indices, counts, timer, plan)
    # G from the main rollout only when nothing else measures it (no estimation pass this step).
    norms = _group_grad_norms(ctx, main, timer) if not estimate.any() and allocator.needs_grad_norms else \
        np.full(len(main), np.nan)
    allocator.observe(indices, *_outcomes(main), norms)
    groups = [_merge(pre.get(g.index), g) for g in main]
    if ctx.partial is not None:
        ctx.partial.record(plan, [g.samples for g in groups])
    if ctx.shaping is not None:
        groups = [replace(g, rewards=ctx.shaping.rewards(g)) for g in groups]
    return groups, int(estimate.sum())


def _outcomes(groups: list[Group]) -> tuple[np.ndarray, np.ndarray]:
    """(successes, trials) per group over its scored samples only."""
    return np.array([g.successes for g in groups]), np.array([g.trials for g in groups])


def _merge(first: Group | None, second: Group) -> Group:
    if first is None:
        return second
    return Group(second.index, first.samples + second.samples, np.concatenate([first.acc, second.acc]),
                 np.concatenate([first.rewards, second.rewards]), first.clipped_tokens + second.clipped_tokens,
                 np.concatenate([first.scored, second.scored]))


def _group_grad_norms(ctx: RolloutContext, groups: list[Group], timer: Timer) -> np.ndarray:
    """Mean gradient norm over each group's correct samples (NaN without one, or without a measure)."""
    if ctx.grad_norms is None:
        return np.full(len(groups), np.nan)
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


def collect(ctx: RolloutContext, selector, group_filter, allocator, batch_prompts: int, n: int, step: int,
            rng: np.random.Generator, timer: Timer) -> Collected:
    """Gather up to batch_prompts kept groups, spending at most the filter's generation batches."""
    used = np.zeros(len(ctx.pool), dtype=bool)
    kept: list[Group] = []
    rolled: list[Group] = []
    predictions: list[np.ndarray] = []
    gen_batches = presampled = unallocated = 0
    while gen_batches < group_filter.max_gen_batches:
        candidates = np.flatnonzero(~used)
        if candidates.size == 0:  # the pool ran out: no further generation batch was paid for
            break
        gen_batches += 1
        with timer("select"):
            indices = np.asarray(selector.select(candidates, min(batch_prompts, candidates.size), rng))
        used[indices] = True
        prediction = selector.predict(indices)
        groups, estimated = roll_out_allocated(ctx, indices, allocator, n, step, timer, rng)
        presampled += estimated
        sampled = np.array([len(g.acc) > 0 for g in groups], dtype=bool)
        unallocated += int((~sampled).sum())
        groups = [g for g, keep in zip(groups, sampled) if keep]
        with timer("select"):
            successes, trials = _outcomes(groups)
            seen = trials > 0  # a group with no scored sample was not observed at all
            selector.observe(indices[sampled][seen], successes[seen], trials[seen])
        if prediction is not None:
            predictions.append(np.asarray(prediction, dtype=np.float64)[sampled])
        rolled.extend(groups)
        kept.extend(g for g in groups if group_filter.keep(g.acc[g.scored]))
        if len(kept) >= batch_prompts:
            break
    capped = len(kept) < batch_prompts and group_filter.max_gen_batches > 1
    predicted = np.concatenate(predictions) if predictions and len(predictions) == gen_batches else None
    return Collected(kept[:batch_prompts], rolled, gen_batches, capped, predicted, presampled=presampled,
                     unallocated=unallocated)


def fill_cache(ctx: RolloutContext, step: int, timer: Timer) -> tuple[int, int]:
    """RPO's up-front fill: one whole completion per pool prompt, cached unverified; returns (rollouts,
    tokens), which the recipe books as training cost."""
    indices = np.arange(len(ctx.pool))
    requests = [GenRequest(tuple(ctx.codec.prompt_ids(ctx.pool[i])), 1) for i in indices]
    with timer("gen"):
        samples = ctx.engine.generate(requests, ctx.params)
    ctx.partial.fill(indices, samples, step)
    return len(indices), sum(s.generated_tokens for group in samples for s in group)
