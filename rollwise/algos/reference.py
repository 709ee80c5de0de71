"""The KL penalty against a frozen reference policy, as a strategy: `NoReference` (kl_coef = 0, the
default) adds nothing; `FrozenReference` keeps a copy of the initial policy and adds kl_coef x KL (k3).

The update calls the same two hooks either way: `logprobs(batch)` once per step (None without a
reference) and `penalty(logp, ref_rows, mask)` per micro-batch.
"""

from __future__ import annotations

import copy
from typing import Protocol

import torch

from rollwise.algos.grpo import kl_k3


class Reference(Protocol):
    needs_every_row: bool  # every row has a KL gradient

    def logprobs(self, batch, logprobs_no_grad) -> torch.Tensor | None: ...

    def penalty(self, logp, ref_logp, mask) -> tuple[torch.Tensor, float | None]: ...


class NoReference:
    needs_every_row = False

    def logprobs(self, batch, logprobs_no_grad):
        return None

    def penalty(self, logp, ref_logp, mask) -> tuple[torch.Tensor, float | None]:
        return torch.zeros((), device=logp.device), None


class FrozenReference:
    """A frozen copy of the policy at the start of training; every row has a KL gradient."""

    needs_every_row = True

    def __init__(self, model, kl_coef: float) -> None:
        self.model = copy.deepcopy(model)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.kl_coef = kl_coef

    def logprobs(self, batch, logprobs_no_grad) -> torch.Tensor:
        return logprobs_no_grad(self.model, batch)

    def penalty(self, logp, ref_logp, mask) -> tuple[torch.Tensor, float | None]:
        kl = kl_k3(logp, ref_logp.to(logp.device), mask)
        return self.kl_coef * kl, float(kl.detach())


def build_reference(cfg, model):
    """The run's KL strategy: a frozen reference only when kl_coef > 0."""
    return FrozenReference(model, cfg.kl_coef) if cfg.kl_coef > 0 else NoReference()
