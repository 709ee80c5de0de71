"""The run's random streams, seeded once and checkpointed together.

- `train`: the numpy Generator of prompt selection and every other training-side draw;
- `probe`: a separate numpy Generator for the unbiased prediction-quality probe, so that turning the
  probe on or off never changes a training selection;
- the global torch RNG (CPU and every CUDA device) that sampling and the update order use, and
  Python's `random`.

Side computations that sample (evaluation, the probe) run under `forked_torch_rng()`, which restores
the CPU and all CUDA generators afterwards (`torch.manual_seed` reseeds CUDA too, so forking the CPU
generator alone would leave CUDA runs perturbed by evaluation).
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@contextlib.contextmanager
def forked_torch_rng(seed: int | None = None):
    """Run a block under its own torch randomness (optionally seeded); the run's streams are restored after."""
    with torch.random.fork_rng(devices=cuda_devices()):
        if seed is not None:
            torch.manual_seed(seed)
        yield


class RandomStreams:
    """All random state of one run (see the module docstring); `state_dict` / `load_state_dict` round trip it."""

    def __init__(self, seed: int) -> None:
        self.train = np.random.default_rng(seed)
        self.probe = np.random.default_rng([seed, 0x9E3779B9])  # independent of `train`
        torch.manual_seed(seed)  # seeds the CPU and every CUDA generator
        random.seed(seed)

    def state_dict(self) -> dict:
        state = {"numpy": self.train.bit_generator.state, "probe": self.probe.bit_generator.state,
                 "torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.train.bit_generator.state = state["numpy"]
        self.probe.bit_generator.state = state["probe"]
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
