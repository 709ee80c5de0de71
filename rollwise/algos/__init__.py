"""Algorithms: how verified rewards become advantages, and advantages a loss (docs/methods.md section 5).

`ALGORITHMS` names them (`--algo`) with each one's checks; `algorithm(name)` builds its pure functions
(`rollwise.algos.table`, which imports torch: naming and checking a configuration does not).

    >>> ALGORITHMS.names
    ('grpo', 'raft', 'raft++', 'reinforce++', 'ppo')
    >>> algorithm("raft++").accepted_only
    True
"""

from __future__ import annotations

from functools import cache

from rollwise.registry import Registry


def _group_relative(cfg) -> None:
    if cfg.samples_per_prompt < 2:
        raise ValueError(f"samples_per_prompt={cfg.samples_per_prompt} with algo={cfg.algo}: group-relative "
                         "advantages need at least 2 samples per prompt (a group of one has advantage 0)")


def _ppo(cfg) -> None:
    if not (0 < cfg.ppo_gamma <= 1 and 0 <= cfg.ppo_lambda <= 1 and cfg.ppo_vf_coef >= 0 and cfg.ppo_value_clip > 0):
        raise ValueError("ppo settings: need 0 < ppo_gamma <= 1, 0 <= ppo_lambda <= 1, ppo_vf_coef >= 0 and "
                         "ppo_value_clip > 0")


ALGORITHMS = Registry("algo", section="algorithm", settings_check=_ppo)
ALGORITHMS.add("grpo", "rollwise.algos.table:grpo", "group-normalised advantages, clipped token-mean loss",
               check=_group_relative)
ALGORITHMS.add("raft", "rollwise.algos.table:raft_", "fine-tune on the verified-correct samples")
ALGORITHMS.add("raft++", "rollwise.algos.table:raft_pp", "RAFT with the importance ratio and clipping")
ALGORITHMS.add("reinforce++", "rollwise.algos.table:reinforce_pp_", "batch-normalised advantages, no critic")
ALGORITHMS.add("ppo", "rollwise.algos.table:ppo_", "a value head on the policy and GAE token advantages")


@cache
def algorithm(name: str):
    """The named algorithm's pure functions (`rollwise.algos.table.Algorithm`)."""
    return ALGORITHMS.build(name)
