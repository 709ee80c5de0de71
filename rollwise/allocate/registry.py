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


def _gvm(cfg) -> None:
    lowest = 1 if cfg.gvm_p_source == "presample" else 0  # predictor: 0 pre-samples is p from the predictor alone
    if cfg.gvm_p_source != "posterior" and not lowest <= cfg.gvm_presamples < cfg.samples_per_prompt:
        raise ValueError(f"gvm_presamples={cfg.gvm_presamples}: must be at least {lowest} and below samples_per_prompt="
                         f"{cfg.samples_per_prompt} (pre-samples are part of each prompt's budget)")
    if cfg.gvm_min_samples < 0 or cfg.gvm_max_samples < -1 or not 0 <= cfg.gvm_p_floor < 1:
        raise ValueError(f"gvm_min_samples={cfg.gvm_min_samples}, gvm_max_samples={cfg.gvm_max_samples}, gvm_p_floor="
                         f"{cfg.gvm_p_floor}: need a minimum >= 0, a maximum >= -1 (-1 auto, 0 no cap) and a floor "
                         "in [0, 1)")
    cap, n_avg = max_samples(cfg.gvm_max_samples, cfg.samples_per_prompt), cfg.samples_per_prompt
    main_avg = n_avg - (cfg.gvm_presamples if cfg.gvm_p_source != "posterior" else 0)
    if cfg.gvm_min_samples > main_avg or (cap is not None and cap < n_avg):
        raise ValueError(f"gvm_min_samples={cfg.gvm_min_samples} and gvm_max_samples={cfg.gvm_max_samples} must "
                         f"bracket samples_per_prompt={n_avg} (the average per prompt; the minimum applies to the "
                         f"main rollout, {main_avg} on average after pre-samples), or no step can be allocated")
    if cfg.gvm_p_source == "posterior" and cfg.selector not in ("mopps", "mopps-threshold"):
        raise ValueError(f"gvm_p_source=posterior reads p from the selector's prediction, and selector={cfg.selector} "
                         "makes none; use selector=mopps (or mopps-threshold), or gvm_p_source=presample or predictor")


def _speed(cfg) -> None:
    if not 0 < cfg.speed_screen < cfg.samples_per_prompt:
        raise ValueError(f"speed_screen={cfg.speed_screen}: must be at least 1 and below samples_per_prompt="
                         f"{cfg.samples_per_prompt} (screening samples are part of each prompt's budget)")


ALLOCATORS = Registry("allocator", section="allocate")
ALLOCATORS.add("fixed", "rollwise.allocate:fixed", "every prompt gets samples_per_prompt")
ALLOCATORS.add("gvm", "rollwise.allocate:gvm", "the step's budget (samples_per_prompt x prompts) split by GVM's "
               "variance-minimising weights", check=_gvm)
ALLOCATORS.add("speed", "rollwise.allocate:speed", "every prompt screened with speed_screen samples, the rest of the "
               "budget only to the prompts that came out mixed (SPEED)", check=_speed)
