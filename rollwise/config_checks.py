"""The run configuration's checks, one function per section of `RunConfig` (DESIGN.md's data flow).

`RunConfig.validate()` calls `check(cfg)` on construction, so a bad value fails at the boundary with a
message naming the field and what it allows, before any model is loaded. Kept apart from the field
declarations so that each file holds one idea: config.py says what can be set, this file what is allowed.
"""

from __future__ import annotations

import dataclasses


def check(cfg) -> None:
    """Raise ValueError naming the field and the allowed values."""
    for checker in (_choices, _counts, _verification, _selection, _algorithm, _allocation, _rpo, _sampling, _data):
        checker(cfg)


def _choices(cfg) -> None:
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, f.name) not in choices:
            raise ValueError(f"{f.name}={getattr(cfg, f.name)!r}: expected one of {', '.join(choices)}")


def _counts(cfg) -> None:
    positive = ["batch_prompts", "samples_per_prompt", "train_size", "eval_size", "minibatches", "updates_per_step",
                "mopps_candidates", "ds_max_gen_batches", "threads", "gen_batch_size", "micro_batch",
                "keep_checkpoints"]
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)}: must be at least 1")
    for name in ["steps", "eval_every", "checkpoint_every", "eval_samples", "probe_every", "warmup_steps",
                 "max_new_tokens", "lora_r", "lr_warmup_steps", "probe_size"]:
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name}={getattr(cfg, name)}: must not be negative")


def _verification(cfg) -> None:
    if cfg.verify_batch_budget < 0 or cfg.verify_breaker_timeouts < 0 or not 0 < cfg.verify_breaker_rate <= 1:
        raise ValueError(f"verify_batch_budget={cfg.verify_batch_budget}, verify_breaker_timeouts="
                         f"{cfg.verify_breaker_timeouts}, verify_breaker_rate={cfg.verify_breaker_rate}: need a "
                         "budget >= 0 and timeouts >= 0 (0 switches each off) and a rate in (0, 1]")


def _selection(cfg) -> None:
    if not 0 < cfg.mopps_decay <= 1:
        raise ValueError(f"mopps_decay={cfg.mopps_decay}: must be in (0, 1]")
    if not 0 <= cfg.mopps_target <= 1:
        raise ValueError(f"mopps_target={cfg.mopps_target}: must be in [0, 1]")
    if not 0 <= cfg.prior_weight <= 1e6:  # finite: a = 1 + w s must stay a usable Beta count
        raise ValueError(f"prior_weight={cfg.prior_weight}: must be a number between 0 and 1e6")
    for name in ("mopps_band", "offline_band"):
        lo, hi = getattr(cfg, name)
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"{name}={[lo, hi]}: need 0 <= low <= high <= 1")


def _algorithm(cfg) -> None:
    from rollwise.config import GROUP_RELATIVE

    if cfg.algo in GROUP_RELATIVE and cfg.samples_per_prompt < 2:
        raise ValueError(f"samples_per_prompt={cfg.samples_per_prompt} with algo={cfg.algo}: group-relative "
                         "advantages need at least 2 samples per prompt (a group of one has advantage 0)")
    if not (0 < cfg.ppo_gamma <= 1 and 0 <= cfg.ppo_lambda <= 1 and cfg.ppo_vf_coef >= 0 and cfg.ppo_value_clip > 0):
        raise ValueError("ppo settings: need 0 < ppo_gamma <= 1, 0 <= ppo_lambda <= 1, ppo_vf_coef >= 0 and "
                         "ppo_value_clip > 0")


def _allocation(cfg) -> None:
    if cfg.allocator == "gvm" and cfg.gvm_p_source == "presample" and not 0 < cfg.gvm_presamples < cfg.samples_per_prompt:
        raise ValueError(f"gvm_presamples={cfg.gvm_presamples}: must be at least 1 and below samples_per_prompt="
                         f"{cfg.samples_per_prompt} (pre-samples are part of each prompt's budget)")


def _rpo(cfg) -> None:
    from rollwise.rollout.partial import check_suffix_budget, parse_cut

    parse_cut(cfg.rpo_cut)
    check_suffix_budget(cfg.rpo_suffix_budget)
    if not 0 <= cfg.rpo_refresh_epsilon <= 1:
        raise ValueError(f"rpo_refresh_epsilon={cfg.rpo_refresh_epsilon}: must be in [0, 1]")
    if cfg.rpo_length_alpha <= 0:
        raise ValueError(f"rpo_length_alpha={cfg.rpo_length_alpha}: must be positive")
    if cfg.rpo_cache_tokens < 0 or cfg.overlong_buffer < 0 or cfg.overlong_penalty < 0:
        raise ValueError("rpo_cache_tokens, overlong_buffer and overlong_penalty must not be negative")
    if cfg.max_new_tokens and cfg.overlong_buffer > cfg.max_new_tokens:
        raise ValueError(f"overlong_buffer={cfg.overlong_buffer} exceeds max_new_tokens={cfg.max_new_tokens}")


def _sampling(cfg) -> None:
    if cfg.temperature <= 0:
        raise ValueError(f"temperature={cfg.temperature}: must be positive (use eval for greedy)")
    if not 0 < cfg.top_p <= 1:
        raise ValueError(f"top_p={cfg.top_p}: must be in (0, 1]")


def _data(cfg) -> None:
    if not 0 <= cfg.warmup_copy_fraction < 1:
        raise ValueError(f"warmup_copy_fraction={cfg.warmup_copy_fraction}: must be in [0, 1)")
    if not 0 <= cfg.warmup_target_acc <= 1:
        raise ValueError(f"warmup_target_acc={cfg.warmup_target_acc}: must be in [0, 1]")
    if cfg.task == "file" and not cfg.train_file:
        raise ValueError("task=file needs train_file (JSONL, Parquet or a saved datasets directory)")
    if cfg.batch_prompts > cfg.train_size and cfg.task != "file":
        raise ValueError(f"batch_prompts={cfg.batch_prompts} exceeds train_size={cfg.train_size}")
