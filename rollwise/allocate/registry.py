"""The allocators users name (`--allocator`), each with its checks; builders in `rollwise.allocate`."""

from __future__ import annotations

from rollwise.registry import Registry


def _gvm(cfg) -> None:
    if cfg.gvm_p_source == "presample" and not 0 < cfg.gvm_presamples < cfg.samples_per_prompt:
        raise ValueError(f"gvm_presamples={cfg.gvm_presamples}: must be at least 1 and below samples_per_prompt="
                         f"{cfg.samples_per_prompt} (pre-samples are part of each prompt's budget)")
    cap, n_avg = cfg.gvm_max_samples or None, cfg.samples_per_prompt  # a cap of 0 means none
    if cfg.gvm_min_samples > n_avg or (cap is not None and cap < n_avg):
        raise ValueError(f"gvm_min_samples={cfg.gvm_min_samples} and gvm_max_samples={cfg.gvm_max_samples} must "
                         f"bracket samples_per_prompt={n_avg} (the average per prompt), or no step can be allocated")
    if cfg.gvm_p_source == "posterior" and cfg.selector not in ("mopps", "mopps-threshold"):
        raise ValueError(f"gvm_p_source=posterior reads p from the selector's prediction, and selector={cfg.selector} "
                         "makes none; use selector=mopps (or mopps-threshold), or gvm_p_source=presample")


ALLOCATORS = Registry("allocator", section="allocate")
ALLOCATORS.add("fixed", "rollwise.allocate:fixed", "every prompt gets samples_per_prompt")
ALLOCATORS.add("gvm", "rollwise.allocate:gvm", "the step's budget (samples_per_prompt x prompts) split by GVM's "
               "variance-minimising weights", check=_gvm)
