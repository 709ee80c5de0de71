"""Held-out evaluation: greedy accuracy and temperature accuracy, each with its standard error.

Temperature accuracy is the mean over `samples` completions per item; its standard error is taken
over items (the unit that was sampled), so it shrinks with more items, not with more samples of the
same item. Sampling runs under a forked torch RNG seeded from the step, so evaluating never changes
the training run's random stream and every variant of a comparison is evaluated with the same seeds.
"""

from __future__ import annotations

import math

import numpy as np
from rollwise.randomness import forked_torch_rng
from rollwise.rollout.collect import verify_samples
from rollwise.rollout.engine import GenRequest, HFEngine, SamplingParams


def standard_error(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return 0.0
    return float(values.std(ddof=1) / math.sqrt(values.size))


def score_samples(samples, items, codec, verifier) -> np.ndarray:
    """acc of each sample (rows: items, columns: samples) through the guarded verifier; NaN where the
    verifier never judged it (timeout, budget, breaker: unknown, not wrong)."""
    scores = verify_samples(codec, verifier, items, samples)
    return np.array([[sc.acc if sc.scored else np.nan for sc in group] for group in scores],
                    dtype=np.float64).reshape(len(items), -1)


def _scored_mean(values: np.ndarray, axis=None) -> np.ndarray:
    """Mean over the scored (finite) entries; NaN where there is none (without numpy's warning)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    return np.divide(total, count, out=np.full(np.shape(count), np.nan), where=count > 0)


def evaluate(engine, codec, verifier, items, *, temperature: float, top_p: float, max_new_tokens: int,
             samples: int, seed: int) -> dict:
    """Greedy and temperature accuracy on held-out items, with standard errors and token counts."""
    requests = [GenRequest(tuple(codec.prompt_ids(it)), 1) for it in items]
    with forked_torch_rng(seed):  # CPU and CUDA generators restored afterwards
        greedy = engine.generate(requests, SamplingParams(max_new_tokens=max_new_tokens, greedy=True))
        result = {"eval_items": len(items), "eval_successes": None, "eval_trials": None}
        g = score_samples(greedy, items, codec, verifier)[:, 0]
        result.update(eval_greedy_acc=float(_scored_mean(g)), eval_greedy_se=standard_error(g[np.isfinite(g)]),
                      eval_unscored=int(np.isnan(g).sum()))
        tokens = sum(s.generated_tokens for grp in greedy for s in grp)
        rollouts = len(items)
        if samples > 0:
            sampled_requests = [GenRequest(r.prompt_ids, samples) for r in requests]
            params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
            sampled = engine.generate(sampled_requests, params)
            acc = score_samples(sampled, items, codec, verifier)
            known = np.isfinite(acc)
            result.update(eval_successes=np.where(known, acc, 0.0).sum(axis=1).astype(np.int64),  # per item, for
                          eval_trials=known.sum(axis=1).astype(np.int64))                        # the outcome log
            per_item = _scored_mean(acc, axis=1)
            per_item = per_item[np.isfinite(per_item)]  # an item none of whose samples was scored is unknown
            result.update(eval_temp_acc=float(_scored_mean(per_item)), eval_temp_se=standard_error(per_item),
                          eval_unscored=result["eval_unscored"] + int(np.isnan(acc).sum()))
            tokens += sum(s.generated_tokens for grp in sampled for s in grp)
            rollouts += len(items) * samples
    result.update(eval_rollouts=rollouts, eval_tokens=tokens)
    return result


def greedy_accuracy(model, codec, items, max_new_tokens: int = 6) -> float:
    """Exact-match greedy accuracy, for the tiny model's supervised warm-up (trusted, digit-only answers)."""
    engine = HFEngine(model, codec.eos_token_id, codec.pad_token_id)
    requests = [GenRequest(tuple(codec.prompt_ids(it)), 1) for it in items]
    out = engine.generate(requests, SamplingParams(max_new_tokens=max_new_tokens, greedy=True))
    hits = [codec.answer(codec.decode(g[0].completion_ids)) == it.answer for g, it in zip(out, items)]
    return float(np.mean(hits))
