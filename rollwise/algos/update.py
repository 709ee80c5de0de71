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

from rollwise.algos import ALGORITHMS, Algorithm
from rollwise.algos import ppo
from rollwise.algos.grpo import kl_k3


class NonFiniteError(RuntimeError):
    """NaN or inf in the loss, rewards or gradients, with nonfinite=stop."""


@dataclass
class Batch:
    input_ids: torch.Tensor  # (N, T)
    attention_mask: torch.Tensor  # (N, T)
    loss_mask: torch.Tensor  # (N, T-1), aligned with the predicted tokens input_ids[:, 1:]
    advantages: torch.Tensor  # (N,) per sample, or (N, T-1) per token (PPO after GAE)
    returns: torch.Tensor | None = None  # (N, T-1) value targets (PPO)
    old_values: torch.Tensor | None = None  # (N, T-1) values before the update (PPO)
    sampler_logp: torch.Tensor | None = None  # (N, T-1) the engine's log-prob of each sampled token (NaN: none)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: torch.Tensor) -> "Batch":
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return Batch(self.input_ids[rows], self.attention_mask[rows], self.loss_mask[rows], self.advantages[rows],
                     pick(self.returns), pick(self.old_values), pick(self.sampler_logp))


def build_batch(samples, advantages: np.ndarray, pad_id: int) -> Batch:
    seqs, starts = [], []
    for s in samples:
        seqs.append(list(s.prompt_ids) + list(s.prefix_ids) + list(s.completion_ids))
        starts.append(len(s.prompt_ids) + getattr(s, "masked_prefix", 0))  # a hint conditions like the prompt
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), width - 1), dtype=torch.float32)
    for i, (seq, start) in enumerate(zip(seqs, starts)):
        ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        loss_mask[i, start - 1 : len(seq) - 1] = 1.0  # position t predicts token t+1
    return Batch(ids, attn, loss_mask, torch.as_tensor(advantages, dtype=torch.float32),
                 sampler_logp=_sampler_logprobs(samples, width))


def _sampler_logprobs(samples, width: int) -> torch.Tensor | None:
    """The engine's log-probabilities aligned with the loss positions (NaN where the engine reported none,
    e.g. an RPO prefix from the cache); None when no sample carries any."""
    if not any(getattr(s, "logprobs", None) for s in samples):
        return None
    out = torch.full((len(samples), width - 1), float("nan"))
    for i, s in enumerate(samples):
        if getattr(s, "logprobs", None):
            first = len(s.prompt_ids) + len(s.prefix_ids) - 1  # position predicting the first completion token
            out[i, first : first + len(s.logprobs)] = torch.tensor(s.logprobs, dtype=torch.float32)
    return out


def sampler_drift(policy_logp: torch.Tensor, sampler_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sums over the loss tokens the sampler reported: [sum |log pi - log mu|, sum pi / mu, max |.|, count].

    pi is the policy being trained, before this step's first optimiser step; mu the engine that sampled.
    Both agree exactly when sampling is on-policy; the mean ratio is the importance ratio the clipped
    loss would need (off-policy drift: another engine's numerics, top-p truncation, stale weights).

    >>> sampler_drift(torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.0, float("nan")]]), torch.ones(1, 2)).tolist()
    [0.0, 1.0, 0.0, 1.0]
    """
    use = (mask > 0) & torch.isfinite(sampler_logp)
    diff = (policy_logp.detach().float() - sampler_logp.to(policy_logp.device))[use]
    if diff.numel() == 0:
        return torch.zeros(4)
    return torch.stack([diff.abs().sum(), diff.exp().sum(), diff.abs().max(), torch.tensor(float(diff.numel()))]).cpu()


def token_logprobs(model, batch: Batch, temperature: float) -> torch.Tensor:
    """log p(token t+1 | tokens <= t) for every position, at the sampling temperature."""
    return forward(model, batch, temperature)[0]


def forward(model, batch: Batch, temperature: float, critic=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token log-probabilities at the sampling temperature and, with a critic, V(s_t) for the same positions."""
    device = next(model.parameters()).device
    out = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                output_hidden_states=critic is not None)
    logits = out.logits[:, :-1].float() / temperature
    targets = batch.input_ids[:, 1:].to(device).unsqueeze(-1)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets).squeeze(-1)
    values = critic(out.hidden_states[-1][:, :-1]) if critic is not None else None
    return logp, values


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
    gamma: float = 1.0  # PPO: GAE discount
    lam: float = 0.95  # PPO: GAE lambda
    vf_coef: float = 0.5  # PPO: weight of the value loss
    value_clip: float = 0.2  # PPO: clip of the value change

    @property
    def algorithm(self) -> Algorithm:
        return ALGORITHMS[self.algo]

    @property
    def skip_zero_advantage(self) -> bool:
        """Rows with advantage 0 add nothing to the policy gradient when no KL term touches them.

        Their loss is exactly 0 (ratio x 0, clipped or not), so they are left out of the forward and
        backward passes; the token-mean denominator still counts their tokens, so the gradient is the
        one the whole batch would give (tested). With a KL penalty every row has a gradient.
        """
        return self.skip_zero_rows and self.kl_coef == 0 and not self.algorithm.critic


def _micro_batches(batch: Batch, size: int):
    for start in range(0, len(batch), size):
        yield batch.select(torch.arange(start, min(start + size, len(batch))))


@torch.no_grad()
def _logprobs_no_grad(model, batch: Batch, s: UpdateSettings) -> torch.Tensor:
    if len(batch) == 0:  # every row was skipped (all advantages 0)
        return torch.zeros(batch.loss_mask.shape)
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


def update_policy(model, optimizer, scheduler, batch: Batch, s: UpdateSettings, ref_model=None, critic=None) -> dict:
    """Run updates_per_step passes of `minibatches` optimiser steps over the batch.

    With a critic (PPO) `batch.advantages` holds each sample's outcome reward; GAE turns it into
    token advantages first.
    """
    single_step = s.minibatches * s.updates_per_step == 1
    stats = {"loss": [], "grad_norm": [], "clip_frac": [], "kl": [], "value_loss": [], "skipped_updates": 0,
             "update_rows": 0}
    critic = critic if s.algorithm.critic else None
    with _without_dropout(model):
        if critic is not None:
            batch = _with_gae(model, critic, batch, s)
        live = _live_rows(batch, s)
        # With one optimiser step the policy that sampled is the policy being trained: ratio == 1 and
        # the old log-probs come free from the same forward pass.
        old = None if single_step else _logprobs_no_grad(model, batch.select(live), s)
        ref = _logprobs_no_grad(ref_model, batch, s) if ref_model is not None and s.kl_coef > 0 else None
        for _ in range(s.updates_per_step):
            order = torch.randperm(len(batch))
            for rows in minibatch_rows(order, s.minibatches):
                _optimiser_step(model, critic, optimizer, batch, rows, live, old, ref, s, stats)
                scheduler.step()
    out = {k: (float(np.mean(v)) if v else None) for k, v in stats.items()
           if k not in ("skipped_updates", "update_rows", "drift")}
    out["skipped_updates"] = stats["skipped_updates"]
    out.update(_drift_metrics(stats.get("drift")))
    out["update_rows"] = stats["update_rows"]
    out["lr"] = optimizer.param_groups[0]["lr"]
    return out


@torch.no_grad()
def _with_gae(model, critic, batch: Batch, s: UpdateSettings) -> Batch:
    """PPO: old values, GAE token advantages (whitened over the batch) and returns."""
    values = torch.cat([forward(model, mb, s.temperature, critic)[1].cpu()
                        for mb in _micro_batches(batch, s.micro_batch)])
    token_rewards = ppo.outcome_rewards(batch.advantages, batch.loss_mask)
    advantages, returns = ppo.gae(token_rewards, values, batch.loss_mask, s.gamma, s.lam)
    advantages = ppo.whiten(advantages, batch.loss_mask)
    return Batch(batch.input_ids, batch.attention_mask, batch.loss_mask, advantages, returns, values,
                 batch.sampler_logp)


def _live_rows(batch: Batch, s: UpdateSettings) -> torch.Tensor:
    """Rows that need forward and backward passes (all of them unless zero-advantage rows may be skipped)."""
    if not s.skip_zero_advantage:
        return torch.arange(len(batch))
    nonzero = batch.advantages != 0
    return torch.nonzero(nonzero if nonzero.dim() == 1 else nonzero.any(dim=1)).flatten()


def _drift_metrics(sums: torch.Tensor | None) -> dict:
    """Per-token means of `sampler_drift` sums (metrics named in docs/metrics.md); {} without engine log-probs."""
    if sums is None or sums[3] == 0:
        return {}
    total_abs, total_ratio, largest, count = sums.tolist()
    return {"sampler_logp_absdiff": total_abs / count, "sampler_logp_maxdiff": largest,
            "sampler_ratio_mean": total_ratio / count, "sampler_tokens": int(count)}


def _optimiser_step(model, critic, optimizer, batch, rows, live, old, ref, s, stats) -> None:
    total_tokens = batch.loss_mask[rows].sum().clamp_min(1.0)  # every row counts in the token mean
    # Row positions inside `live` (old log-probs are stored for live rows only).
    position = torch.full((len(batch),), -1, dtype=torch.long)
    position[live] = torch.arange(len(live))
    rows = rows[position[rows] >= 0]
    stats["update_rows"] += len(rows)
    optimizer.zero_grad(set_to_none=True)
    losses, clips, kls, value_losses = 0.0, [], [], []
    # Drift is measured at the step's first optimiser step, where the policy is still the one that sampled.
    measure_drift = batch.sampler_logp is not None and "drift" not in stats
    drift = torch.zeros(4)
    for start in range(0, len(rows), s.micro_batch):
        part = rows[start : start + s.micro_batch]
        micro = batch.select(part)
        logp, values = forward(model, micro, s.temperature, critic)
        old_logp = logp.detach() if old is None else old[position[part]].to(logp.device)
        mask = micro.loss_mask.to(logp.device)
        if measure_drift:
            part = sampler_drift(logp, micro.sampler_logp, mask)
            drift = torch.stack([drift[0] + part[0], drift[1] + part[1], torch.maximum(drift[2], part[2]),
                                 drift[3] + part[3]])
        loss, info = s.algorithm.policy_loss(logp, old_logp, micro.advantages.to(logp.device), mask, s.clip_low,
                                             s.clip_high)
        if values is not None:
            vloss = ppo.value_loss(values, micro.old_values.to(logp.device), micro.returns.to(logp.device), mask,
                                   s.value_clip)
            loss = loss + s.vf_coef * vloss
            value_losses.append(float(vloss.detach()))
        if ref is not None:
            kl = kl_k3(logp, ref[part].to(logp.device), mask)
            loss = loss + s.kl_coef * kl
            kls.append(float(kl))
        weight = micro.loss_mask.sum() / total_tokens  # token-mean over the whole minibatch
        (loss * weight).backward()
        losses += float(loss.detach()) * float(weight)
        clips.append(info["clip_frac"])
    if measure_drift:
        stats["drift"] = drift
    params = [p for group in optimizer.param_groups for p in group["params"]]
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
    if value_losses:
        stats["value_loss"].append(float(np.mean(value_losses)))
