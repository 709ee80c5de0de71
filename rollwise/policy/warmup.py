"""The tiny model's supervised warm-up: teach the easy part of the task, stop at a target, or stop the run.

Why warm-ups jump late (docs/results.md): on the loss plateau the model knows little beyond the
leading digit; the units digit of a k-term sum depends on all k units digits jointly, so gradient
descent has no first-order signal and leaves the plateau by chance, later (or never) with more
terms. Mixing in one-term "copy" items (`copy_fraction`: the answer is the prompt's only number)
gives that signal: copying a digit column to the same answer column is learnt at once, and the
attention pattern it builds (answer digit j looks at column j) is the one addition needs.

A warm-up that ends below its target must not go on into RL: RL would see almost only zero-variance
groups and learn nothing. `require_target` raises `WarmupMissedTarget`, a ValueError whose message
says what to change, and the model is not cached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from rollwise.data.pool import PoolItem
from rollwise.policy.tiny import PAD, widest_number


@dataclass
class WarmupReport:
    """What a warm-up did: steps taken, the checkpoint kept and its validation greedy accuracy."""

    steps: int
    best_step: int
    best_greedy_acc: float
    seconds: float
    history: list = field(default_factory=list)


class WarmupMissedTarget(ValueError):
    """The warm-up ended below its target accuracy; the message says what to change."""


def copy_items(options: dict, count: int, seed: int) -> list[PoolItem]:
    """`count` one-term items (`17` -> answer `17`) with numbers of the task's digit range, 10**d included."""
    gen = torch.Generator().manual_seed(seed)
    top = 10 ** (widest_number(options) - 1)
    numbers = torch.randint(0, top + 1, (count,), generator=gen).tolist()
    return [PoolItem(id=-1 - i, prompt=str(n), answer=str(n), metadata={"expression": str(n)})
            for i, n in enumerate(numbers)]


def supervised_batch(codec, items: list[PoolItem]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded prompt+completion sequences with a loss mask on the completion tokens only."""
    seqs, masks = [], []
    for it in items:
        p, t = codec.prompt_ids(it), codec.supervised_target(it)
        seqs.append(p + t)
        masks.append([0] * len(p) + [1] * len(t))
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), PAD, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)  # prompt pads are attended; tail pads are not
    loss_mask = torch.zeros((len(seqs), width), dtype=torch.float32)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        loss_mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return ids, attn, loss_mask


def supervised_loss(model, codec, items: list[PoolItem]) -> torch.Tensor:
    """Mean next-token cross-entropy over the completion tokens."""
    ids, attn, loss_mask = supervised_batch(codec, items)
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                            reduction="none")
    mask = loss_mask[:, 1:].reshape(-1)
    return (nll * mask).sum() / mask.sum()


def _draw_batch(train_items, copies, batch: int, copy_fraction: float, gen: torch.Generator) -> list[PoolItem]:
    n_copy = int(round(batch * copy_fraction)) if copies else 0
    idx = torch.randint(len(train_items), (batch - n_copy,), generator=gen).tolist()
    picked = [train_items[i] for i in idx]
    if n_copy:
        picked += [copies[i] for i in torch.randint(len(copies), (n_copy,), generator=gen).tolist()]
    return picked


def warm_up(model, codec, train_items: list[PoolItem], val_items: list[PoolItem], steps: int, batch: int,
            lr: float, seed: int, eval_every: int = 25, stop_at: float = 0.0, copies: list[PoolItem] = (),
            copy_fraction: float = 0.0, log=print) -> WarmupReport:
    """Supervised warm-up to the first validation greedy accuracy >= stop_at (when > 0), else to the
    end; keeps the checkpoint it stopped at, or the best one when the target was never reached.

    Stopping at a target rather than a step count is what makes the starting policy partly trained on
    purpose: these models learn sums in a sudden jump, and a fixed step count lands before or after it.
    A `copy_fraction` of every batch is drawn from `copies` (one-term items; see the module docstring).
    """
    from rollwise.rollout.evaluate import greedy_accuracy

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
    best = (-1.0, 0, None)
    history = []
    start = time.perf_counter()
    model.train()
    step = 0  # steps taken: the loop may stop early, or not run at all (steps=0: a random model)
    for step in range(1, steps + 1):
        loss = supervised_loss(model, codec, _draw_batch(train_items, copies, batch, copy_fraction, gen))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % eval_every == 0 or step == steps:
            acc = greedy_accuracy(model, codec, val_items, codec.max_new_tokens)
            history.append({"step": step, "loss": loss.item(), "greedy_acc": acc})
            log(f"warm-up step {step}/{steps}: loss {loss.item():.3f}, validation greedy accuracy {acc:.3f}")
            if acc > best[0]:
                best = (acc, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
            if 0 < stop_at <= acc:
                break
            model.train()
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    return WarmupReport(step, best[1], max(best[0], 0.0), time.perf_counter() - start, history)


def require_target(report: WarmupReport, target: float, cfg) -> None:
    """Raise WarmupMissedTarget when a warm-up that was asked for (steps > 0, target > 0) missed its target."""
    if cfg.warmup_steps == 0 or target <= 0 or report.best_greedy_acc >= target:
        return
    raise WarmupMissedTarget(
        f"the tiny model's warm-up reached validation greedy accuracy {report.best_greedy_acc:.3f} (best, at step "
        f"{report.best_step} of {report.steps}), below its target warmup_target_acc={target}: starting RL from it "
        f"would give almost only zero-variance groups. Task options {cfg.task_options}, warm-up options "
        f"{cfg.warmup_task_options}, data_seed {cfg.data_seed}. Change one of: more steps (--warmup-steps, now "
        f"{cfg.warmup_steps}), more one-term copy items (--warmup-copy-fraction, now {cfg.warmup_copy_fraction}), "
        f"another learning rate (--warmup-lr, now {cfg.warmup_lr}; 1e-3 with copy items left the plateau on every seed "
        f"measured), easier warm-up items (--warmup-task-options, "
        f"e.g. fewer terms), or accept a weaker start with a lower --warmup-target-acc (0 accepts any)."
    )
