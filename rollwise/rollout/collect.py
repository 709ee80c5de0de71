"""One step's data: select prompts, roll them out, verify, filter; repeat while the filter asks.

    select --> rollout --> verify --> observe (selector) --> filter --> kept groups

The selector observes every group it paid for, including groups the filter discards, and its
prediction is read before that observation (prediction quality must not peek at the outcome).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rollwise.rollout.engine import GenRequest, SamplingParams
from rollwise.track import Timer


@dataclass
class Group:
    """The samples of one prompt in one step, with their verified outcomes."""

    index: int  # position in the pool
    samples: list
    acc: np.ndarray
    rewards: np.ndarray

    @property
    def tokens(self) -> int:
        return sum(s.generated_tokens for s in self.samples)


@dataclass
class Collected:
    kept: list[Group]
    rolled_out: list[Group]
    gen_batches: int
    capped: bool
    predicted: np.ndarray | None  # selector prediction for rolled_out, before observing them
    verify_counts: dict = field(default_factory=dict)

    @property
    def rollouts(self) -> int:
        return sum(len(g.samples) for g in self.rolled_out)

    @property
    def tokens(self) -> int:
        return sum(g.tokens for g in self.rolled_out)


@dataclass
class RolloutContext:
    """What rolling out needs: the pool, the policy's codec and engine, the guarded verifier."""

    pool: object
    codec: object
    engine: object
    verifier: object
    params: SamplingParams
    reward: str  # "acc" or "score"


def roll_out(ctx: RolloutContext, indices: np.ndarray, n: np.ndarray | int, timer: Timer) -> list[Group]:
    """Sample n[i] completions for each pool index and verify them."""
    counts = np.broadcast_to(np.asarray(n), indices.shape)
    items = [ctx.pool[i] for i in indices]
    requests = [GenRequest(tuple(ctx.codec.prompt_ids(it)), int(k)) for it, k in zip(items, counts)]
    with timer("gen"):
        samples = ctx.engine.generate(requests, ctx.params)
    with timer("verify"):
        answers, flat_items = [], []
        for item, group in zip(items, samples):
            for s in group:
                answers.append(ctx.codec.answer(ctx.codec.decode(list(s.prefix_ids) + s.completion_ids)))
                flat_items.append(item)
        scores = ctx.verifier.score_batch(answers, flat_items)
    groups, pos = [], 0
    for index, group in zip(indices, samples):
        part = scores[pos : pos + len(group)]
        pos += len(group)
        acc = np.array([sc.acc for sc in part], dtype=np.float64)
        rewards = acc.copy() if ctx.reward == "acc" else np.array([sc.reward for sc in part], dtype=np.float64)
        groups.append(Group(int(index), group, acc, rewards))
    return groups


def collect(ctx: RolloutContext, selector, group_filter, batch_prompts: int, n: int, rng: np.random.Generator,
            timer: Timer) -> Collected:
    """Gather up to batch_prompts kept groups, spending at most the filter's generation batches."""
    used = np.zeros(len(ctx.pool), dtype=bool)
    kept: list[Group] = []
    rolled: list[Group] = []
    predictions: list[np.ndarray] = []
    gen_batches = 0
    while gen_batches < group_filter.max_gen_batches:
        candidates = np.flatnonzero(~used)
        if candidates.size == 0:  # the pool ran out: no further generation batch was paid for
            break
        gen_batches += 1
        with timer("select"):
            indices = np.asarray(selector.select(candidates, min(batch_prompts, candidates.size), rng))
        used[indices] = True
        prediction = selector.predict(indices)
        groups = roll_out(ctx, indices, n, timer)
        with timer("select"):
            trials = np.array([len(g.acc) for g in groups])
            successes = np.array([g.acc.sum() for g in groups])
            selector.observe(indices, successes, trials)
        if prediction is not None:
            predictions.append(np.asarray(prediction, dtype=np.float64))
        rolled.extend(groups)
        kept.extend(g for g in groups if group_filter.keep(g.acc))
        if len(kept) >= batch_prompts:
            break
    capped = len(kept) < batch_prompts and group_filter.max_gen_batches > 1
    predicted = np.concatenate(predictions) if predictions and len(predictions) == gen_batches else None
    return Collected(kept[:batch_prompts], rolled, gen_batches, capped, predicted)
