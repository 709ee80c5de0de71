"""The training recipe: RL fine-tuning with verifiable rewards, readable top to bottom.

    pool --select--> B prompts --rollout--> n completions each --verify--> acc, reward
         --filter--> kept groups --GRPO--> one policy update; every N steps: held-out evaluation

Deliberate simplifications (each is a setting or a later issue, not a hidden branch):
- the engine samples from the training model itself (no separate inference copy);
- one seeded numpy Generator and the global torch RNG carry all randomness; both are checkpointed;
- evaluation runs under a forked torch RNG, so it never perturbs training and all variants of a
  comparison are evaluated with the same seeds;
- the offline filter's pass-rate estimate is paid once before step 1 and counted as training cost.
"""

from __future__ import annotations

import copy
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rollwise import checkpoint as ckpt
from rollwise.algos.grpo import ADVANTAGES
from rollwise.config import RunConfig
from rollwise.evaluate import evaluate
from rollwise.filters import build_filter
from rollwise.learn import NonFiniteError, UpdateSettings, build_batch, update_policy
from rollwise.models import load_policy
from rollwise.pool import build_pools
from rollwise.rollout.collect import RolloutContext, collect, roll_out
from rollwise.rollout.engine import HFEngine, SamplingParams
from rollwise.select import build_selector
from rollwise.select.quality import group_stats, mae, spearman
from rollwise.tasks.guard import GuardedVerifier
from rollwise.tasks.verifiers import build_verifier
from rollwise.track import Accounting, MetricsLog, Timer


class StopRequest:
    """SIGINT/SIGTERM ask the loop to checkpoint and exit after the current step."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second signal: stop now
            raise KeyboardInterrupt
        self.requested = True
        print(f"\nrollwise: signal {signum}: saving a checkpoint after this step", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def train(cfg: RunConfig, resume: bool = False, log=None) -> dict:
    """Run (or resume) one training run; returns the summary also written to summary.json."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    cfg.save(out / "config.yaml")
    train_pool, eval_pool = build_pools(cfg)
    policy = load_policy(cfg, log)
    model, codec = policy.model, policy.codec
    engine = HFEngine(model, codec.eos_token_id, codec.pad_token_id, cfg.gen_batch_size)
    params = SamplingParams(cfg.temperature, cfg.top_p, policy.max_new_tokens)
    verifier = GuardedVerifier(build_verifier(cfg.task, cfg.verifier, cfg.task_options), cfg.verify_workers,
                               cfg.verify_timeout, cfg.verify_memory_mb)
    ctx = RolloutContext(train_pool, codec, engine, verifier, params, cfg.reward)
    selector = build_selector(cfg, train_pool)
    group_filter = build_filter(cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (cfg.lr_warmup_steps + 1)))
    ref_model = _reference_model(model) if cfg.kl_coef > 0 else None
    settings = UpdateSettings(cfg.algo, cfg.temperature, cfg.clip_low, cfg.clip_high, cfg.kl_coef, cfg.grad_clip,
                              cfg.minibatches, cfg.updates_per_step, cfg.micro_batch, cfg.nonfinite)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    acct = Accounting()
    metrics = MetricsLog(out / "metrics.jsonl", out / "tb")
    state = ckpt.load_latest_checkpoint(out) if resume else None
    if resume and state is None:
        log(f"no checkpoint in {out}: starting from step 0")
    wall_start = time.perf_counter()

    def evaluate_now(step: int) -> dict:
        result = evaluate(engine, codec, verifier, eval_pool.items, temperature=cfg.temperature, top_p=cfg.top_p,
                          max_new_tokens=policy.max_new_tokens, samples=cfg.eval_samples, seed=cfg.seed * 100_003 + step)
        acct.add_evaluation(result.pop("eval_rollouts"), result.pop("eval_tokens"))
        return result

    if state is not None:
        start_step = _restore(state, model, optimizer, scheduler, selector, acct, rng)
        metrics.truncate_to(state["metrics_offset"])
        initial_eval, last_eval = state["initial_eval"], state["last_eval"]
        wall_start -= acct.wall_seconds
        log(f"resumed {out} at step {start_step}")
    else:
        metrics.truncate_to(0)
        start_step = 0
        row = {"step": 0, **_prefilter(cfg, ctx, selector, acct, rng)}
        initial_eval = last_eval = evaluate_now(0)
        acct.wall_seconds = time.perf_counter() - wall_start
        metrics.write({**row, **initial_eval, **acct.state_dict()})

    bar = _progress(cfg, start_step)
    interrupted = False
    with StopRequest() as stop:
        for step in range(start_step + 1, cfg.steps + 1):
            row = _train_step(cfg, ctx, selector, group_filter, model, optimizer, scheduler, settings, ref_model,
                              acct, rng, step)
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                last_eval = evaluate_now(step)
                row.update(last_eval)
            acct.wall_seconds = time.perf_counter() - wall_start
            metrics.write({**row, **acct.state_dict()})
            _advance(bar, row, last_eval, acct, step)
            if stop.requested or step == cfg.steps or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                _save(cfg, out, step, model, optimizer, scheduler, selector, acct, rng, metrics, initial_eval, last_eval)
            if stop.requested:
                interrupted = True
                break
    if bar is not None:
        bar.close()
    metrics.close()
    verifier.close()
    summary = _summary(cfg, policy, acct, initial_eval, last_eval, interrupted)
    if not interrupted:
        _save_selector(selector, train_pool, out)
        ckpt.atomic_json(summary, out / "summary.json")
    return summary


def _train_step(cfg, ctx, selector, group_filter, model, optimizer, scheduler, settings, ref_model, acct, rng, step):
    timer = Timer()
    got = collect(ctx, selector, group_filter, cfg.batch_prompts, cfg.samples_per_prompt, rng, timer)
    acct.add_training(len(got.rolled_out), got.rollouts, got.tokens)
    row = {"step": step, "prompts": len(got.rolled_out), "rollouts": got.rollouts, "tokens": got.tokens,
           "gen_batches": got.gen_batches, "ds_capped": got.capped,
           "discarded_groups": len(got.rolled_out) - len(got.kept)}
    trials = np.array([len(g.acc) for g in got.rolled_out])
    successes = np.array([g.acc.sum() for g in got.rolled_out])
    row.update(group_stats(successes, trials))
    row.update(_prediction_quality("pred", got.predicted, successes / trials))
    row.update({f"verify_{k}": v for k, v in ctx.verifier.pop_counts().items()})
    samples = [s for g in got.kept for s in g.samples]
    rewards = np.concatenate([g.rewards for g in got.kept]) if got.kept else np.zeros(0)
    acc = np.concatenate([g.acc for g in got.kept]) if got.kept else np.zeros(0)
    kept_effective = [g for g in got.kept if g.acc.min() != g.acc.max()]
    row.update(groups=len(got.kept), effective_ratio=len(kept_effective) / max(len(got.kept), 1),
               reward_mean=float(rewards.mean()) if rewards.size else None,
               acc_mean=float(acc.mean()) if acc.size else None)
    with timer("update"):
        row.update(_update(cfg, got, samples, rewards, model, optimizer, scheduler, settings, ref_model, ctx))
    if cfg.probe_every and step % cfg.probe_every == 0:
        row.update(_probe(cfg, ctx, selector, acct, rng))
    for phase in ("select", "gen", "verify", "update"):
        row[f"time_{phase}"] = timer.get(phase)
    acct.seconds += sum(timer.seconds.values())
    return row


def _update(cfg, got, samples, rewards, model, optimizer, scheduler, settings, ref_model, ctx) -> dict:
    if not samples:
        return {"skipped_updates": 0, "loss": None}
    if not np.isfinite(rewards).all():
        if cfg.nonfinite == "stop":
            raise NonFiniteError("non-finite rewards from the verifier; set nonfinite=skip to skip such steps")
        return {"skipped_updates": 1, "loss": None}
    groups = np.concatenate([np.full(len(g.samples), i) for i, g in enumerate(got.kept)])
    advantages = ADVANTAGES[cfg.algo](rewards, groups, eps=cfg.adv_eps)
    batch = build_batch(samples, advantages, ctx.codec.pad_token_id)
    return update_policy(model, optimizer, scheduler, batch, settings, ref_model)


def _probe(cfg, ctx, selector, acct, rng) -> dict:
    """Prediction quality on a uniformly drawn probe: free of the selector's own selection bias."""
    size = min(cfg.probe_size, len(ctx.pool))
    indices = np.sort(rng.choice(len(ctx.pool), size=size, replace=False))
    predicted = selector.predict(indices)
    if predicted is None:
        return {}
    groups = roll_out(ctx, indices, cfg.samples_per_prompt, Timer())
    ctx.verifier.pop_counts()
    acct.add_evaluation(sum(len(g.samples) for g in groups), sum(g.tokens for g in groups))
    observed = np.array([g.acc.mean() for g in groups])
    return _prediction_quality("probe", np.asarray(predicted), observed)


def _prediction_quality(prefix: str, predicted, observed) -> dict:
    if predicted is None:
        return {}
    return {f"{prefix}_spearman": spearman(predicted, observed), f"{prefix}_mae": mae(predicted, observed)}


def _prefilter(cfg, ctx, selector, acct, rng) -> dict:
    """Selectors that estimate pass rates up front (the offline filter) pay for it here."""
    if not hasattr(selector, "fit"):
        return {}
    indices = np.arange(len(ctx.pool))
    groups = roll_out(ctx, indices, cfg.offline_samples, Timer())
    successes = np.array([g.acc.sum() for g in groups])
    trials = np.array([len(g.acc) for g in groups])
    selector.fit(successes, trials)
    rollouts, tokens = int(trials.sum()), sum(g.tokens for g in groups)
    acct.add_training(0, rollouts, tokens)
    return {"prefilter_rollouts": rollouts, "prefilter_tokens": tokens}


def _reference_model(model):
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _save(cfg, out, step, model, optimizer, scheduler, selector, acct, rng, metrics, initial_eval, last_eval):
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise NonFiniteError(f"parameter {name} holds NaN/inf at step {step}: no checkpoint written; "
                                 "resume from the previous checkpoint with a lower learning rate")
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "selector": selector.state_dict(), "accounting": acct.state_dict(),
             "rng": ckpt.rng_state(rng), "metrics_offset": metrics.offset(), "initial_eval": initial_eval,
             "last_eval": last_eval, "config": cfg.to_dict()}
    ckpt.save_checkpoint(out, step, state, cfg.keep_checkpoints)


def _restore(state, model, optimizer, scheduler, selector, acct, rng) -> int:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    selector.load_state_dict(state["selector"])
    acct.load_state_dict(state["accounting"])
    ckpt.restore_rng_state(rng, state["rng"])
    return int(state["step"])


def _save_selector(selector, pool, out: Path) -> None:
    from rollwise.select.priors import save_posteriors

    if selector.predict(np.arange(min(1, len(pool)))) is not None:
        save_posteriors(selector, pool, out / "selector.npz")


def _summary(cfg, policy, acct, initial_eval, last_eval, interrupted) -> dict:
    return {"out_dir": cfg.out_dir, "model": policy.source, "steps": cfg.steps, "interrupted": interrupted,
            "initial_eval": initial_eval, "final_eval": last_eval, **acct.state_dict()}


def _progress(cfg, start_step):
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.steps, initial=start_step, desc="rollwise", unit="step", dynamic_ncols=True)


def _advance(bar, row, last_eval, acct, step) -> None:
    if bar is None:
        return
    reward = row.get("reward_mean")
    bar.set_postfix(reward=f"{reward:.2f}" if reward is not None else "-",
                    eval_acc=f"{last_eval.get('eval_temp_acc', float('nan')):.3f}",
                    rollouts=acct.total_rollouts, refresh=False)
    bar.update(1)
