"""The run configuration's one validation pass: generic checks here, each chosen component's own checks
in its registry entry.

`RunConfig.validate()` calls `check(cfg)` on construction, so a bad value fails at the boundary with a
message naming the field and what it allows, before any pool or model is built. Kept apart from the
field declarations so that each file holds one idea: fields.py says what can be set, this file what is
allowed.
"""

from __future__ import annotations

import dataclasses


def registries() -> tuple:
    """The registries of interchangeable components; the config field of each is named by its `kind`."""
    from rollwise.algos import ALGORITHMS
    from rollwise.allocate.registry import ALLOCATORS
    from rollwise.rollout.registry import ROLLOUT_MODES
    from rollwise.select.registry import FILTERS, SELECTORS

    return SELECTORS, FILTERS, ALLOCATORS, ROLLOUT_MODES, ALGORITHMS


def check(cfg) -> None:
    """Raise ValueError naming the field and the allowed values."""
    for checker in (_choices, _counts, _verification, _predictor, _components, _hints, _shaping, _sampling, _data):
        checker(cfg)


def _choices(cfg) -> None:
    from rollwise.track import report_backends

    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, f.name) not in choices:
            raise ValueError(f"{f.name}={getattr(cfg, f.name)!r}: expected one of {', '.join(choices)}")
    report_backends(cfg.report_to)


def _counts(cfg) -> None:
    positive = ["batch_prompts", "samples_per_prompt", "train_size", "eval_size", "minibatches", "updates_per_step",
                "threads", "gen_batch_size", "micro_batch", "keep_checkpoints"]
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


def _components(cfg) -> None:
    """Each chosen component's own checks (its registry entry): its settings, and what it needs of the others."""
    for registry in registries():
        registry.check(getattr(cfg, registry.kind), cfg)


def _predictor(cfg) -> None:
    from rollwise.predict.registry import run_settings  # numpy only

    if not 0 < cfg.mopps_decay <= 1:
        raise ValueError(f"mopps_decay={cfg.mopps_decay}: must be in (0, 1]")
    if not 0 <= cfg.prior_weight <= 1e6:  # finite: a = 1 + w s must stay a usable Beta count
        raise ValueError(f"prior_weight={cfg.prior_weight}: must be a number between 0 and 1e6")
    run_settings(cfg)  # unknown settings and out-of-range values name themselves


def _hints(cfg) -> None:
    if not (0 < cfg.rpo_hint_below <= 1 and 0 < cfg.rpo_hint_target < 1):
        raise ValueError(f"rpo_hint_below={cfg.rpo_hint_below}, rpo_hint_target={cfg.rpo_hint_target}: need a "
                         "threshold in (0, 1] and a target in (0, 1)")


def _shaping(cfg) -> None:
    if cfg.overlong_buffer < 0 or cfg.overlong_penalty < 0:
        raise ValueError("overlong_buffer and overlong_penalty must not be negative")
    if cfg.max_new_tokens and cfg.overlong_buffer > cfg.max_new_tokens:
        raise ValueError(f"overlong_buffer={cfg.overlong_buffer} exceeds max_new_tokens={cfg.max_new_tokens}")
    _rpo_refresh(cfg)


def _rpo_refresh(cfg) -> None:
    whole = cfg.rollout == "partial" and cfg.rpo_refresh == "whole"
    too_many = whole and cfg.rpo_whole_samples >= cfg.samples_per_prompt
    if cfg.rpo_whole_samples < 0 or cfg.rpo_whole_every < 0 or too_many:
        raise ValueError(f"rpo_whole_samples={cfg.rpo_whole_samples}, rpo_whole_every={cfg.rpo_whole_every}: need "
                         f"0 <= whole samples < samples_per_prompt={cfg.samples_per_prompt} and every >= 0 (0: never)")
    if whole and cfg.rpo_whole_samples == 0 and cfg.rpo_whole_every == 0:
        raise ValueError("rpo_refresh=whole with rpo_whole_samples=0 and rpo_whole_every=0 never samples a whole "
                         "path: set one of them (or rpo_refresh=suffix, the published rule)")
    if cfg.rpo_stale_steps < 1:
        raise ValueError(f"rpo_stale_steps={cfg.rpo_stale_steps}: must be at least 1")
    if not (0 < cfg.rpo_hint_below <= 1 and 0 < cfg.rpo_hint_target < 1):
        raise ValueError(f"rpo_hint_below={cfg.rpo_hint_below}, rpo_hint_target={cfg.rpo_hint_target}: need a "
                         "threshold in (0, 1] and a target in (0, 1)")
    if cfg.rpo_fill == "upfront" and cfg.rollout != "partial":
        raise ValueError("rpo_fill=upfront fills the experience cache of partial rollouts: it needs rollout=partial")


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
