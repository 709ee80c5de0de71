"""The policy update: rollouts and advantages in, optimiser steps out.

Sequences are right-padded prompt + prefix + completion; the loss covers the generated tokens and,
for partial rollouts, the cached prefix (RPO trains on the prefix too). Gradients accumulate over
micro-batches with token-mean weighting, so the loss is the same whatever `micro_batch` is.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from rollwise.algos import algorithm
from rollwise.algos.table import Algorithm
from rollwise.algos.critic import NoCritic
from rollwise.algos.reference import NoReference


class NonFiniteError(RuntimeError):
    """NaN or inf in the loss, rewards or gradients, with nonfinite=stop."""


@dataclass
class Batch:
    input_ids: torch.Tensor  # (N, T)
    attention_mask: torch.Tensor  # (N, T)
    loss_mask: torch.Tensor  # (N, T-1), aligned with the predicted tokens input_ids[:, 1:]
    advantages: torch.Tensor  # (N,) per sample, or (N, T-1) per token (PPO after GAE)
    sampler_logp: torch.Tensor | None = None  # (N, T-1) the engine's log-prob of each sampled token (NaN: none)
    extras: dict = field(default_factory=dict)  # per-row tensors a critic adds (PPO: returns, old_values)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: torch.Tensor) -> "Batch":
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return Batch(self.input_ids[rows], self.attention_mask[rows], self.loss_mask[rows], self.advantages[rows],
                     pick(self.sampler_logp), {k: v[rows] for k, v in self.extras.items()})

    def with_extras(self, advantages: torch.Tensor, **extras) -> "Batch":
        """The same rows with new advantages and added per-row tensors."""
        return Batch(self.input_ids, self.attention_mask, self.loss_mask, advantages, self.sampler_logp,
                     {**self.extras, **extras})


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


def forward(model, batch: Batch, temperature: float, want_hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token log-probabilities at the sampling temperature and, when asked (a critic reads them), the last
    hidden states."""
    device = next(model.parameters()).device
    out = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                output_hidden_states=want_hidden)
    logits = out.logits[:, :-1].float() / temperature
    targets = batch.input_ids[:, 1:].to(device).unsqueeze(-1)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets).squeeze(-1)
    return logp, (out.hidden_states[-1] if want_hidden else None)


@dataclass
class UpdateSettings:
    algo: str
    temperature: float
    clip_low: float
    clip_high: float
    grad_clip: float
    minibatches: int
    updates_per_step: int
    micro_batch: int
    nonfinite: str
    skip_zero_rows: bool = True  # False forces every row through (tests compare both)

    @property
    def algorithm(self) -> Algorithm:
        return algorithm(self.algo)


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


@dataclass
class _StepInputs:
    """What every optimiser step of one update reads: the batch, its live rows and the fixed log-probs."""

    batch: Batch
    live: torch.Tensor  # rows that need forward and backward passes
    position: torch.Tensor  # row -> its position in `live` (-1: skipped)
    old: torch.Tensor | None  # old log-probs of the live rows (None: one optimiser step, ratio 1)
    ref: torch.Tensor | None  # reference log-probs of every row (None: no KL term)


def update_policy(model, optimizer, scheduler, batch: Batch, s: UpdateSettings, critic=None, reference=None) -> dict:
    """Run updates_per_step passes of `minibatches` optimiser steps over the batch.

    `critic` (PPO: rollwise.algos.critic.ValueCritic) turns each sample's outcome reward into GAE token
    advantages first and adds its value loss; `reference` (rollwise.algos.reference) adds the KL term.
    """
    critic = critic if critic is not None else NoCritic()
    reference = reference if reference is not None else NoReference()
    single_step = s.minibatches * s.updates_per_step == 1
    stats = {"loss": [], "grad_norm": [], "clip_frac": [], "kl": [], "value_loss": [], "skipped_updates": 0,
             "update_rows": 0}
    with _without_dropout(model):
        batch = critic.prepare(model, batch, lambda m, mb, want_hidden: forward(m, mb, s.temperature, want_hidden),
                               lambda b: _micro_batches(b, s.micro_batch))
        live = _live_rows(batch, s, critic, reference)
        position = torch.full((len(batch),), -1, dtype=torch.long)
        position[live] = torch.arange(len(live))
        # With one optimiser step the policy that sampled is the policy being trained: ratio == 1 and
        # the old log-probs come free from the same forward pass.
        old = None if single_step else _logprobs_no_grad(model, batch.select(live), s)
        inputs = _StepInputs(batch, live, position, old, reference.logprobs(batch, lambda m, b: _logprobs_no_grad(m, b, s)))
        for _ in range(s.updates_per_step):
            order = torch.randperm(len(batch))
            for rows in minibatch_rows(order, s.minibatches):
                _optimiser_step(model, optimizer, inputs, rows, s, critic, reference, stats)
                scheduler.step()
    out = {k: (float(np.mean(v)) if v else None) for k, v in stats.items()
           if k not in ("skipped_updates", "update_rows", "drift")}
    out["skipped_updates"] = stats["skipped_updates"]
    out.update(_drift_metrics(stats.get("drift")))
    out["update_rows"] = stats["update_rows"]
    out["lr"] = optimizer.param_groups[0]["lr"]
    return out


def _live_rows(batch: Batch, s: UpdateSettings, critic, reference) -> torch.Tensor:
    """Rows that need forward and backward passes.

    Rows with advantage 0 add nothing to the policy gradient, so they are left out of the forward and
    backward passes; the token-mean denominator still counts their tokens, so the gradient is the one the
    whole batch would give (tested). A critic's value loss or a KL term gives every row a gradient.
    """
    if not s.skip_zero_rows or critic.needs_every_row or reference.needs_every_row:
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


def _optimiser_step(model, optimizer, inputs: _StepInputs, rows, s: UpdateSettings, critic, reference,
                    stats) -> None:
    batch = inputs.batch
    total_tokens = batch.loss_mask[rows].sum().clamp_min(1.0)  # every row counts in the token mean
    rows = rows[inputs.position[rows] >= 0]
    stats["update_rows"] += len(rows)
    optimizer.zero_grad(set_to_none=True)
    losses, clips, kls, value_losses = 0.0, [], [], []
    # Drift is measured at the step's first optimiser step, where the policy is still the one that sampled.
    measure_drift = batch.sampler_logp is not None and "drift" not in stats
    drift = torch.zeros(4)
    for start in range(0, len(rows), s.micro_batch):
        micro_rows = rows[start : start + s.micro_batch]
        micro = batch.select(micro_rows)
        logp, hidden = forward(model, micro, s.temperature, critic.wants_hidden)
        old_logp = logp.detach() if inputs.old is None else inputs.old[inputs.position[micro_rows]].to(logp.device)
        mask = micro.loss_mask.to(logp.device)
        if measure_drift:
            drift = _add_drift(drift, sampler_drift(logp, micro.sampler_logp, mask))
        loss, info = s.algorithm.policy_loss(logp, old_logp, micro.advantages.to(logp.device), mask, s.clip_low,
                                             s.clip_high)
        value_term, value_loss = critic.loss(hidden, micro, mask)
        kl_term, kl = reference.penalty(logp, None if inputs.ref is None else inputs.ref[micro_rows], mask)
        loss = loss + value_term + kl_term
        value_losses += [value_loss] if value_loss is not None else []
        kls += [kl] if kl is not None else []
        weight = micro.loss_mask.sum() / total_tokens  # token-mean over the whole minibatch
        (loss * weight).backward()
        losses += float(loss.detach()) * float(weight)
        clips.append(info["clip_frac"])
    if measure_drift:
        stats["drift"] = drift
    _apply(optimizer, losses, s, stats, clips, kls, value_losses)


def _add_drift(total: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    return torch.stack([total[0] + part[0], total[1] + part[1], torch.maximum(total[2], part[2]), total[3] + part[3]])


def _apply(optimizer, losses: float, s: UpdateSettings, stats: dict, clips, kls, value_losses) -> None:
    """Clip the gradient and step, or skip a non-finite step (nonfinite=skip) / stop (nonfinite=stop)."""
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
