"""RPO's per-step metrics: what the step's generation batches continued, generated and hinted, and the cache.

docs/metrics.md lists every key. Kept apart from `rollwise.rollout.partial` (which re-exports it) so
that the planning module stays about plans.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rollwise.rollout.cache import ExperienceCache
    from rollwise.rollout.engine import Sample
    from rollwise.rollout.partial import PartialPlan


def rpo_metrics(plan: PartialPlan, samples: list[list[Sample]], cache: ExperienceCache, step: int | None = None,
                stale_steps: int = 50) -> dict:
    """Per-step RPO metrics: cuts, prefix, suffix and whole-path tokens of the groups that continue a cached
    path, the hinted groups, the cache's size and (with `step`) how old its tokens are.

    A sample with an empty prefix in a continuing group is a whole path (the whole-path refresh).
    """
    going_on = plan.cached & ~plan.hinted
    partial = [s for group, c in zip(samples, going_on) if c for s in group]
    suffixes = [s for s in partial if s.prefix_ids]
    wholes = [s for s in partial if not s.prefix_ids]
    hinted = [s for group, h in zip(samples, plan.hinted) if h for s in group]
    row = {"rpo_partial_groups": int(going_on.sum()), "rpo_full_groups": int((~plan.cached).sum()),
           "rpo_cut_mean": _mean(plan.cuts[going_on]), "rpo_cache_age_mean": _mean(plan.ages[going_on]),
           "rpo_prefix_tokens": sum(len(s.prefix_ids) for s in partial + hinted),
           "rpo_suffix_tokens": sum(len(s.completion_ids) for s in suffixes + hinted),
           "rpo_suffix_mean": _mean([len(s.completion_ids) for s in suffixes]),
           "rpo_whole_samples": len(wholes), "rpo_whole_tokens": sum(len(s.completion_ids) for s in wholes),
           "rpo_cache_paths": len(cache), "rpo_cache_tokens": cache.live_tokens,
           "rpo_cache_bytes": cache.memory_bytes(), "rpo_cache_evictions": cache.evictions}
    if plan.hinted.any():
        row.update(rpo_hint_groups=int(plan.hinted.sum()), rpo_hint_tokens=sum(len(s.prefix_ids) for s in hinted))
    if step is not None:
        ages = cache.staleness(step, stale_steps)
        row.update(rpo_oldest_age_mean=ages["oldest_mean"], rpo_oldest_age_max=ages["oldest_max"],
                   rpo_stale_share=ages["stale_share"])
    return row


def _mean(values) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else None
