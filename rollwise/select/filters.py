"""Post-rollout group filters. A filter decides which rolled-out groups a step trains on and how many
generation batches it may spend collecting them.

Dynamic sampling (DAPO, docs/methods.md section 1) keeps only groups whose `acc` values are not all equal
(only those carry GRPO gradient) and draws further generation batches until B such groups exist or
`max_gen_batches` is reached; at the cap it trains on what it has. Every discarded rollout still
counts in the accounting: that is the price MoPPS avoids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class GroupFilter(Protocol):
    name: str
    max_gen_batches: int  # generation batches a step may spend collecting B kept groups

    def keep(self, acc: np.ndarray) -> bool: ...


def is_effective(acc: np.ndarray) -> bool:
    """A group carries gradient when its verified outcomes are not all equal."""
    acc = np.asarray(acc)
    return bool(acc.size > 1 and acc.min() != acc.max())


@dataclass(frozen=True)
class NoFilter:
    name: str = "none"
    max_gen_batches: int = 1

    def keep(self, acc: np.ndarray) -> bool:
        return True


@dataclass(frozen=True)
class DynamicSampling:
    max_gen_batches: int = 4
    name: str = "dynamic"

    def keep(self, acc: np.ndarray) -> bool:
        return is_effective(acc)


def no_filter(cfg) -> NoFilter:
    return NoFilter()


def dynamic_sampling(cfg) -> DynamicSampling:
    return DynamicSampling(cfg.ds_max_gen_batches)


def build_filter(cfg) -> GroupFilter:
    """The filter `cfg.filter` names (rollwise.select.registry.FILTERS)."""
    from rollwise.select.registry import FILTERS

    return FILTERS.build(cfg.filter, cfg)
