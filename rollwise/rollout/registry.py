"""The rollout modes users name (`--rollout`), each with its checks; builders in `rollwise.rollout.modes`."""

from __future__ import annotations

from rollwise.registry import Registry


def _rpo_settings(cfg) -> None:
    from rollwise.rollout.partial import check_suffix_budget  # numpy only

    cfg.rpo_cut_rule  # noqa: B018 - parsing it names a bad value
    check_suffix_budget(cfg.rpo_suffix_budget)
    if not 0 <= cfg.rpo_refresh_epsilon <= 1:
        raise ValueError(f"rpo_refresh_epsilon={cfg.rpo_refresh_epsilon}: must be in [0, 1]")
    if cfg.rpo_length_alpha <= 0:
        raise ValueError(f"rpo_length_alpha={cfg.rpo_length_alpha}: must be positive")
    if cfg.rpo_cache_tokens < 0:
        raise ValueError(f"rpo_cache_tokens={cfg.rpo_cache_tokens}: must not be negative")
    if cfg.rpo_whole_samples < 0 or cfg.rpo_whole_every < 0:
        raise ValueError(f"rpo_whole_samples={cfg.rpo_whole_samples}, rpo_whole_every={cfg.rpo_whole_every}: must "
                         "not be negative (0: never)")
    if cfg.rpo_stale_steps < 1:
        raise ValueError(f"rpo_stale_steps={cfg.rpo_stale_steps}: must be at least 1")


def _partial(cfg) -> None:
    if cfg.max_new_tokens and 0 < cfg.rpo_cache_tokens < cfg.max_new_tokens:
        raise ValueError(f"rpo_cache_tokens={cfg.rpo_cache_tokens} cannot hold one path of max_new_tokens="
                         f"{cfg.max_new_tokens} tokens: raise it (or 0: unbounded)")
    whole = cfg.rpo_refresh == "whole"
    if whole and cfg.rpo_whole_samples >= cfg.samples_per_prompt:
        raise ValueError(f"rpo_whole_samples={cfg.rpo_whole_samples}: must be below samples_per_prompt="
                         f"{cfg.samples_per_prompt} (the group's other samples continue its cached path)")
    if whole and cfg.rpo_whole_samples == 0 and cfg.rpo_whole_every == 0:
        raise ValueError("rpo_refresh=whole with rpo_whole_samples=0 and rpo_whole_every=0 never samples a whole "
                         "path: set one of them (or rpo_refresh=suffix, the published rule)")


def _full(cfg) -> None:
    if cfg.rpo_fill == "upfront":
        raise ValueError("rpo_fill=upfront fills the experience cache of partial rollouts: it needs rollout=partial")


ROLLOUT_MODES = Registry("rollout", section="sampling", settings_check=_rpo_settings)
ROLLOUT_MODES.add("full", "rollwise.rollout.modes:whole_paths", "whole completions from the prompt (with "
                  "rpo_hints, a hinted prefix for prompts predicted hopeless)", check=_full)
ROLLOUT_MODES.add("partial", "rollwise.rollout.modes:partial_paths", "RPO: continue a cached path of each prompt cut "
                  "by m tokens (docs/rpo.md)", check=_partial)
