"""The rollout modes users name (`--rollout`), each with its checks; builders in `rollwise.rollout.modes`."""

from __future__ import annotations

from rollwise.registry import Registry


def _full(cfg) -> None:
    """Prefix hints and the rpo_* metrics' settings, which whole-path runs use too."""
    if cfg.rpo_stale_steps < 1:
        raise ValueError(f"rpo_stale_steps={cfg.rpo_stale_steps}: must be at least 1")
    if not (0 < cfg.rpo_hint_below <= 1 and 0 < cfg.rpo_hint_target < 1):
        raise ValueError(f"rpo_hint_below={cfg.rpo_hint_below}, rpo_hint_target={cfg.rpo_hint_target}: need a "
                         "threshold in (0, 1] and a target in (0, 1)")
    if cfg.rpo_cache_tokens < 0:
        raise ValueError(f"rpo_cache_tokens={cfg.rpo_cache_tokens}: must not be negative")


def _refresh(cfg) -> None:
    whole = cfg.rpo_refresh == "whole"
    too_many = whole and cfg.rpo_whole_samples >= cfg.samples_per_prompt
    if cfg.rpo_whole_samples < 0 or cfg.rpo_whole_every < 0 or too_many:
        raise ValueError(f"rpo_whole_samples={cfg.rpo_whole_samples}, rpo_whole_every={cfg.rpo_whole_every}: need "
                         f"0 <= whole samples < samples_per_prompt={cfg.samples_per_prompt} and every >= 0 (0: never)")
    if whole and cfg.rpo_whole_samples == 0 and cfg.rpo_whole_every == 0:
        raise ValueError("rpo_refresh=whole with rpo_whole_samples=0 and rpo_whole_every=0 never samples a whole "
                         "path: set one of them (or rpo_refresh=suffix, the published rule)")


def _partial(cfg) -> None:
    from rollwise.rollout.partial import check_suffix_budget, parse_cut  # numpy only

    _full(cfg)
    _refresh(cfg)
    parse_cut(cfg.rpo_cut)
    check_suffix_budget(cfg.rpo_suffix_budget)
    if not 0 <= cfg.rpo_refresh_epsilon <= 1:
        raise ValueError(f"rpo_refresh_epsilon={cfg.rpo_refresh_epsilon}: must be in [0, 1]")
    if cfg.rpo_length_alpha <= 0:
        raise ValueError(f"rpo_length_alpha={cfg.rpo_length_alpha}: must be positive")
    if cfg.rpo_cache_tokens < 0:
        raise ValueError(f"rpo_cache_tokens={cfg.rpo_cache_tokens}: must not be negative")
    if cfg.max_new_tokens and 0 < cfg.rpo_cache_tokens < cfg.max_new_tokens:
        raise ValueError(f"rpo_cache_tokens={cfg.rpo_cache_tokens} cannot hold one path of max_new_tokens="
                         f"{cfg.max_new_tokens} tokens: raise it (or 0: unbounded)")


ROLLOUT_MODES = Registry("rollout", section="sampling")
ROLLOUT_MODES.add("full", "rollwise.rollout.modes:whole_paths", "whole completions from the prompt (with rpo_hints, "
                  "near-hopeless prompts continue a hint)", check=_full)
ROLLOUT_MODES.add("partial", "rollwise.rollout.modes:partial_paths", "RPO: continue a cached path of each prompt cut "
                  "by m tokens (docs/rpo.md)", check=_partial)
