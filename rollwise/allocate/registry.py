"""The allocators users name (`--allocator`), each with its checks; builders in `rollwise.allocate`."""

from __future__ import annotations

from rollwise.registry import Registry

AUTO_CAP_FACTOR = 2  # gvm_max_samples = -1: at most twice the average per prompt (no prompt takes the step)


def max_samples(setting: int, n_avg: int) -> int | None:
    """The per-prompt cap a `gvm_max_samples` setting means: -1 auto (2 x n_avg), 0 none, else itself.

    >>> max_samples(-1, 8), max_samples(0, 8), max_samples(12, 8)
    (16, None, 12)
    """
    if setting == -1:
        return AUTO_CAP_FACTOR * n_avg
    return setting or None


def _allocation_settings(cfg) -> None:
    if cfg.gvm_min_samples < 0 or cfg.gvm_max_samples < -1 or not 0 <= cfg.gvm_p_floor < 1:
        raise ValueError(f"gvm_min_samples={cfg.gvm_min_samples}, gvm_max_samples={cfg.gvm_max_samples}, gvm_p_floor="
                         f"{cfg.gvm_p_floor}: need a minimum >= 0, a maximum >= -1 (-1 auto, 0 no cap) and a floor "
                         "in [0, 1)")
    if cfg.gvm_alpha <= 0 or cfg.gvm_estimate_every < 1 or cfg.speed_screen < 1:
        raise ValueError(f"gvm_alpha={cfg.gvm_alpha}, gvm_estimate_every={cfg.gvm_estimate_every}, speed_screen="
                         f"{cfg.speed_screen}: need alpha > 0, estimates every >= 1 step and >= 1 screening sample")


def _gvm(cfg) -> None:
    n_avg = cfg.samples_per_prompt
    if cfg.gvm_p_source == "presample" and not 0 < cfg.gvm_presamples < n_avg:
        raise ValueError(f"gvm_presamples={cfg.gvm_presamples}: must be at least 1 and below samples_per_prompt="
                         f"{n_avg} (pre-samples are part of each prompt's budget)")
    if cfg.gvm_p_source == "predictor" and not 0 <= cfg.gvm_presamples < n_avg:
        raise ValueError(f"gvm_presamples={cfg.gvm_presamples}: must be at least 0 and below samples_per_prompt="
                         f"{n_avg} with gvm_p_source=predictor")
    cap = max_samples(cfg.gvm_max_samples, n_avg)
    main_avg = n_avg - (cfg.gvm_presamples if cfg.gvm_p_source != "posterior" else 0)
    if cfg.gvm_min_samples > main_avg or (cap is not None and cap < n_avg):
        raise ValueError(f"gvm_min_samples={cfg.gvm_min_samples} and gvm_max_samples={cfg.gvm_max_samples} must "
                         f"bracket samples_per_prompt={n_avg} (the average per prompt; the minimum applies to the "
                         f"main rollout, {main_avg} on average after pre-samples), or no step can be allocated")


def _speed(cfg) -> None:
    if not 0 < cfg.speed_screen < cfg.samples_per_prompt:
        raise ValueError(f"speed_screen={cfg.speed_screen}: must be at least 1 and below samples_per_prompt="
                         f"{cfg.samples_per_prompt} (screening samples are part of each prompt's budget)")


ALLOCATORS = Registry("allocator", section="allocate", settings_check=_allocation_settings)
ALLOCATORS.add("fixed", "rollwise.allocate:fixed", "every prompt gets samples_per_prompt")
ALLOCATORS.add("gvm", "rollwise.allocate:gvm", "the step's budget (samples_per_prompt x prompts) split by GVM's "
               "variance-minimising weights (docs/allocation.md)", check=_gvm)
ALLOCATORS.add("speed", "rollwise.allocate:speed", "SPEED: every prompt screened with speed_screen samples, the rest "
               "only to the prompts that came out mixed", check=_speed)
