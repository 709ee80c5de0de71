"""The policy update: rollouts and advantages in, optimiser steps out.

Sequences are right-padded prompt + prefix + completion; the loss covers the generated tokens and,
for partial rollouts, the cached prefix (RPO trains on the prefix too). Gradients accumulate over
micro-batches with token-mean weighting, so the loss is the same whatever `micro_batch` is.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from rollwise.algos.grpo import LOSSES, kl_k3


class NonFiniteError(RuntimeError):
    """NaN or inf in the loss, rewards or gradients, with nonfinite=stop."""


@dataclass
class Batch:
    input_ids: torch.Tensor  # (N, T)
    attention_mask: torch.Tensor  # (N, T)
    loss_mask: torch.Tensor  # (N, T-1), aligned with the predicted tokens input_ids[:, 1:]
    advantages: torch.Tensor  # (N,)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: torch.Tensor) -> "Batch":
        return Batch(self.input_ids[rows], self.attention_mask[rows], self.loss_mask[rows], self.advantages[rows])


def build_batch(samples, advantages: np.ndarray, pad_id: int) -> Batch:
    seqs, starts = [], []
    for s in samples:
        seqs.append(list(s.prompt_ids) + list(s.prefix_ids) + list(s.completion_ids))
        starts.append(len(s.prompt_ids))
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), width - 1), dtype=torch.float32)
    for i, (seq, start) in enumerate(zip(seqs, starts)):
        ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        loss_mask[i, start - 1 : len(seq) - 1] = 1.0  # position t predicts token t+1
    return Batch(ids, attn, loss_mask, torch.as_tensor(advantages, dtype=torch.float32))


def token_logprobs(model, batch: Batch, temperature: float) -> torch.Tensor:
    """log p(token t+1 | tokens <= t) for every position, at the sampling temperature."""
    device = next(model.parameters()).device
    logits = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)).logits
    logits = logits[:, :-1].float() / temperature
    targets = batch.input_ids[:, 1:].to(device).unsqueeze(-1)
    return torch.log_softmax(logits, dim=-1).gather(-1, targets).squeeze(-1)


@dataclass
class UpdateSettings:
    algo: str
    temperature: float
    clip_low: float
    clip_high: float
    kl_coef: float
    grad_clip: float
    minibatches: int
    updates_per_step: int
    micro_batch: int
    nonfinite: str
    skip_zero_rows: bool = True  # False forces every row through (tests compare both)

    @property
    def skip_zero_advantage(self) -> bool:
        """Rows with advantage 0 add nothing to the policy gradient when no KL term touches them.

        Their loss is exactly 0 (ratio x 0, clipped or not), so they are left out of the forward and
        backward passes; the token-mean denominator still counts their tokens, so the gradient is the
        one the whole batch would give (tested). With a KL penalty every row has a gradient.
        """
        return self.skip_zero_rows and self.kl_coef == 0


def _micro_batches(batch: Batch, size: int):
    for start in range(0, len(batch), size):
        yield batch.select(torch.arange(start, min(start + size, len(batch))))


@torch.no_grad()
def _logprobs_no_grad(model, batch: Batch, s: UpdateSettings) -> torch.Tensor:
    return torch.cat([token_logprobs(model, mb, s.temperature) for mb in _micro_batches(batch, s.micro_batch)])


@contextlib.contextmanager
def _without_dropout(model):
    """RL forward passes run in eval mode (no dropout): the policy that sampled (engine, eval mode) is the
    policy whose log-probabilities the loss uses. Gradients flow in eval mode all the same."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def minibatch_rows(order: torch.Tensor, minibatches: int) -> list[torch.Tensor]:
    """Exactly `minibatches` row sets of near-equal size (`chunk` may give fewer: 9 rows in 4 -> 3).

    >>> [len(r) for r in minibatch_rows(torch.arange(9), 4)]
    [3, 2, 2, 2]
    """
    return [rows for rows in torch.tensor_split(order, minibatches) if len(rows)]


def update_policy(model, optimizer, scheduler, batch: Batch, s: UpdateSettings, ref_model=None) -> dict:
    """Run updates_per_step passes of `minibatches` optimiser steps over the batch."""
    loss_fn = LOSSES[s.algo]
    single_step = s.minibatches * s.updates_per_step == 1
    stats = {"loss": [], "grad_norm": [], "clip_frac": [], "kl": [], "skipped_updates": 0, "update_rows": 0}
    with _without_dropout(model):
        live = _live_rows(batch, s)
        # With one optimiser step the policy that sampled is the policy being trained: ratio == 1 and
        # the old log-probs come free from the same forward pass.
        old = None if single_step else _logprobs_no_grad(model, batch.select(live), s)
        ref = _logprobs_no_grad(ref_model, batch, s) if ref_model is not None and s.kl_coef > 0 else None
        for _ in range(s.updates_per_step):
            order = torch.randperm(len(batch))
            for rows in minibatch_rows(order, s.minibatches):
                _optimiser_step(model, optimizer, batch, rows, live, old, ref, loss_fn, s, stats)
                scheduler.step()
    out = {k: (float(np.mean(v)) if v else None) for k, v in stats.items()
           if k not in ("skipped_updates", "update_rows")}
    out["skipped_updates"] = stats["skipped_updates"]
    out["update_rows"] = stats["update_rows"]
    out["lr"] = optimizer.param_groups[0]["lr"]
    return out


def _live_rows(batch: Batch, s: UpdateSettings) -> torch.Tensor:
    """Rows that need forward and backward passes (all of them unless zero-advantage rows may be skipped)."""
    if not s.skip_zero_advantage:
        return torch.arange(len(batch))
    return torch.nonzero(batch.advantages != 0).flatten()


def _optimiser_step(model, optimizer, batch, rows, live, old, ref, loss_fn, s, stats) -> None:
    total_tokens = batch.loss_mask[rows].sum().clamp_min(1.0)  # every row counts in the token mean
    # Row positions inside `live` (old log-probs are stored for live rows only).
    position = torch.full((len(batch),), -1, dtype=torch.long)
    position[live] = torch.arange(len(live))
    rows = rows[position[rows] >= 0]
    stats["update_rows"] += len(rows)
    optimizer.zero_grad(set_to_none=True)
    losses, clips, kls = 0.0, [], []
    for start in range(0, len(rows), s.micro_batch):
        part = rows[start : start + s.micro_batch]
        micro = batch.select(part)
        logp = token_logprobs(model, micro, s.temperature)
        old_logp = logp.detach() if old is None else old[position[part]].to(logp.device)
        mask = micro.loss_mask.to(logp.device)
        loss, info = loss_fn(logp, old_logp, micro.advantages.to(logp.device), mask, s.clip_low, s.clip_high)
        if ref is not None:
            kl = kl_k3(logp, ref[part].to(logp.device), mask)
            loss = loss + s.kl_coef * kl
            kls.append(float(kl))
        weight = micro.loss_mask.sum() / total_tokens  # token-mean over the whole minibatch
        (loss * weight).backward()
        losses += float(loss.detach()) * float(weight)
        clips.append(info["clip_frac"])
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:  # skipped rows have zero gradient: the step is the one the full batch would take
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, s.grad_clip if s.grad_clip > 0 else math.inf))
    if not (math.isfinite(losses) and math.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        if s.nonfinite == "stop":
            raise NonFiniteError(f"non-finite loss ({losses}) or gradient norm ({grad_norm}); "
                                 "lower the learning rate or set nonfinite=skip")
        stats["skipped_updates"] += 1
        return
    optimizer.step()
    stats["loss"].append(losses)
    stats["grad_norm"].append(grad_norm)
    if clips:
        stats["clip_frac"].append(float(np.mean(clips)))
    if kls:
        stats["kl"].append(float(np.mean(kls)))
