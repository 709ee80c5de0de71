"""The training recipe: RL fine-tuning with verifiable rewards, readable top to bottom.

    pool --select--> B prompts --rollout--> n completions each --verify--> acc, reward
         --filter--> kept groups --GRPO--> one policy update; every N steps: held-out evaluation

`Run` (rollwise.run) holds everything one run is made of; its `components()` are the stateful parts,
which a checkpoint saves and restores by name. This file is the loop; rollwise.run builds the parts
and writes them out.

Deliberate simplifications (each is a setting or a later issue, not a hidden branch):
- the engine samples from the training model itself (no separate inference copy);
- the run's random streams (`rollwise.randomness`) are seeded once and checkpointed; evaluation and
  the prediction probe sample under a forked torch RNG and the probe draws its prompts from its own
  numpy stream, so neither changes what training does;
- the offline filter's pass-rate estimate is paid once before step 1 and counted as training cost.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rollwise import checkpoint as ckpt
from rollwise.algos import ALGORITHMS
from rollwise.config import RunConfig
from rollwise.evaluate import evaluate
from rollwise.filters import is_effective
from rollwise.learn import NonFiniteError, build_batch, update_policy
from rollwise.randomness import forked_torch_rng
from rollwise.rollout.collect import collect, fill_cache, roll_out
from rollwise.rollout.scored import ScoredBatch, observed_rates
from rollwise.run import (Run, build_run, export_policy, restore, save_checkpoint, save_selector, summary,
                          write_run_info)
from rollwise.rundir import check_same_run, open_run_dir
from rollwise.select.quality import group_stats, mae, spearman
from rollwise.track import Timer


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


def train(cfg: RunConfig, resume: bool = False, overwrite: bool = False, log=None) -> dict:
    """Run (or resume) one training run; returns the summary also written to summary.json."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out = Path(cfg.out_dir)
    state = open_run_dir(out, resume, overwrite, log)
    if state is not None:
        check_same_run(state, cfg.to_dict(), {})  # cheap config check before any pool or model is built
    torch.set_num_threads(cfg.threads)
    run = build_run(cfg, out, log)
    identity = run.identity()
    if state is not None:
        check_same_run(state, cfg.to_dict(), identity)
    cfg.save(out / "config.yaml")
    wall_start = time.perf_counter()
    if state is not None:
        start_step = restore(run, state)
        run.ctx.engine.sync_weights(run.policy.model)  # an engine with its own weights (vLLM) samples the restored policy
        wall_start -= run.acct.wall_seconds
        log(f"resumed {out} at step {start_step}")
    else:
        start_step, row = 0, _start(run)
        run.acct.wall_seconds = time.perf_counter() - wall_start
        run.metrics.write({**row, **run.acct.state_dict()})
    write_run_info(run, identity, resumed=state is not None)
    interrupted = _loop(run, start_step, wall_start, identity)
    run.metrics.close()
    run.ctx.verifier.close()
    getattr(run.ctx.engine, "close", lambda: None)()
    result = summary(run, interrupted)
    if not interrupted:
        save_selector(run)
        result["model_dir"] = export_policy(run)
        ckpt.atomic_json(result, out / "summary.json")
    write_run_info(run, identity, resumed=state is not None)
    return result


def _start(run: Run) -> dict:
    """A new run: the selector's up-front estimate (if any) and the step-0 evaluation; returns row 0."""
    run.metrics.truncate_to(0)
    row = {"step": 0, **_prefilter(run), **_fill_cache(run)}
    run.evals.initial = run.evals.last = _evaluate(run, 0)
    return {**row, **run.evals.initial}


def _loop(run: Run, start_step: int, wall_start: float, identity: dict) -> bool:
    """Steps start_step+1 .. cfg.steps; returns True when a signal stopped the run early."""
    cfg = run.cfg
    bar = _progress(cfg, start_step)
    interrupted = False
    with StopRequest() as stop:
        for step in range(start_step + 1, cfg.steps + 1):
            row = _train_step(run, step)
            if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
                run.evals.last = _evaluate(run, step)
                row.update(run.evals.last)
            run.acct.wall_seconds = time.perf_counter() - wall_start
            run.metrics.write({**row, **run.acct.state_dict()})
            _advance(bar, row, run.evals.last, run.acct, step)
            if stop.requested or step == cfg.steps or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                save_checkpoint(run, step, identity)
            if stop.requested:
                interrupted = True
                break
    if bar is not None:
        bar.close()
    return interrupted


def _train_step(run: Run, step: int) -> dict:
    cfg, ctx = run.cfg, run.ctx
    timer = Timer()
    got = collect(ctx, run.selector, run.group_filter, run.allocator, cfg.batch_prompts, cfg.samples_per_prompt, step,
                  run.streams.train, timer)
    run.acct.add_training(len(got.rolled_out), got.rollouts, got.tokens, got.prefix_tokens)
    row = {"step": step, "prompts": len(got.rolled_out), "rollouts": got.rollouts, "tokens": got.tokens,
           "gen_batches": got.gen_batches, "ds_capped": got.capped,
           "discarded_groups": len(got.rolled_out) - len(got.kept)}
    row.update(_allocation_stats(np.array([len(g.acc) for g in got.rolled_out]), got))
    observed = [g for g in got.rolled_out if g.trials]  # unscored samples are unknown, not wrong (rollout.scored)
    row.update(group_stats(np.array([g.successes for g in observed]), np.array([g.trials for g in observed])))
    row.update(_prediction_quality("pred", got.predicted, observed_rates(got.rolled_out)))
    row.update({f"verify_{k}": v for k, v in ctx.verifier.pop_counts().items()}, unscored=got.unscored)
    batch = ScoredBatch.from_groups(got.kept)
    kept_effective = [g for g in got.kept if is_effective(g.acc[g.scored])]
    row.update(groups=len(got.kept), effective_ratio=len(kept_effective) / max(len(got.kept), 1),
               reward_mean=float(batch.rewards.mean()) if batch.rewards.size else None,
               acc_mean=float(batch.acc.mean()) if batch.acc.size else None)
    with timer("update"):
        row.update(_update(run, batch))
    with timer("sync"):  # an engine with its own copy of the weights (vLLM) samples the updated policy from now on
        ctx.engine.sync_weights(run.policy.model)
    if ctx.partial is not None:  # RPO: refresh the cache from every group paid for; rpo_* metrics
        row.update(ctx.partial.finish_step(got.rolled_out, run.streams.train, step))
    if cfg.probe_every and step % cfg.probe_every == 0:
        row.update(_probe(run))
    for phase in ("select", "gen", "verify", "gradnorm", "update"):
        row[f"time_{phase}"] = timer.get(phase)
    row["time_weight_sync"] = timer.get("sync")
    run.acct.seconds += sum(timer.seconds.values())
    return row


def _allocation_stats(trials: np.ndarray, got) -> dict:
    """How the step's samples were spread over its prompts (constant under the fixed allocator)."""
    if trials.size == 0:
        return {}
    return {"alloc_min": int(trials.min()), "alloc_max": int(trials.max()), "alloc_std": float(trials.std()),
            "alloc_unallocated": got.unallocated, "alloc_presampled": got.presampled}


def _update(run: Run, scored: ScoredBatch) -> dict:
    """One policy update on the kept groups' scored samples (unscored ones never enter it)."""
    cfg, algo = run.cfg, ALGORITHMS[run.cfg.algo]
    if not np.isfinite(scored.rewards).all():
        if cfg.nonfinite == "stop":
            raise NonFiniteError("non-finite rewards from the verifier; set nonfinite=skip to skip such steps")
        return {"skipped_updates": 1, "loss": None}
    if algo.accepted_only:  # RAFT: rejected samples never enter the update
        scored = scored.take(np.flatnonzero(scored.acc > 0))
    if not scored.samples:
        return {"skipped_updates": 0, "loss": None}
    advantages = algo.advantages(scored.rewards, scored.acc, scored.groups, eps=cfg.adv_eps)
    batch = build_batch(scored.samples, advantages, run.ctx.codec.pad_token_id)
    return update_policy(run.policy.model, run.optimizer, run.scheduler, batch, run.settings, run.ref_model,
                         run.critic)


def _evaluate(run: Run, step: int) -> dict:
    """Held-out evaluation; its rollouts and verifier counts are booked as evaluation, not training."""
    cfg, policy = run.cfg, run.policy
    result = evaluate(run.ctx.engine, policy.codec, run.ctx.verifier, run.eval_pool.items,
                      temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=policy.max_new_tokens,
                      samples=cfg.eval_samples, seed=cfg.seed * 100_003 + step)
    run.acct.add_evaluation(result.pop("eval_rollouts"), result.pop("eval_tokens"))
    result.update({f"eval_verify_{k}": v for k, v in run.ctx.verifier.pop_counts().items()})
    return result


def _probe(run: Run) -> dict:
    """Prediction quality on a uniformly drawn probe: free of the selector's own selection bias.

    Its prompts come from the probe's own stream and its sampling runs under a forked torch RNG, so a
    run with the probe makes exactly the selections and updates of a run without it.
    """
    cfg, ctx, stream = run.cfg, run.ctx, run.streams.probe
    size = min(cfg.probe_size, len(ctx.pool))
    indices = np.sort(stream.choice(len(ctx.pool), size=size, replace=False))
    predicted = run.selector.predict(indices)
    if predicted is None:
        return {}
    with forked_torch_rng(int(stream.integers(2**62))):
        groups = roll_out(ctx, indices, cfg.samples_per_prompt, Timer())
    counts = ctx.verifier.pop_counts()
    run.acct.add_evaluation(sum(len(g.samples) for g in groups), sum(g.tokens for g in groups))
    return {**_prediction_quality("probe", np.asarray(predicted), observed_rates(groups)),
            **{f"probe_verify_{k}": v for k, v in counts.items()}}


def _prediction_quality(prefix: str, predicted, observed) -> dict:
    """Spearman and MAE over the prompts with both a prediction and an observed (scored) rate."""
    if predicted is None:
        return {}
    both = np.isfinite(np.asarray(predicted, dtype=np.float64)) & np.isfinite(observed)
    predicted, observed = np.asarray(predicted, dtype=np.float64)[both], np.asarray(observed)[both]
    return {f"{prefix}_spearman": spearman(predicted, observed), f"{prefix}_mae": mae(predicted, observed)}


def _prefilter(run: Run) -> dict:
    """Selectors that estimate pass rates up front (the offline filter) pay for it here."""
    if not hasattr(run.selector, "fit"):
        return {}
    indices = np.arange(len(run.ctx.pool))
    groups = roll_out(run.ctx, indices, run.cfg.offline_samples, Timer())
    run.selector.fit(np.array([g.successes for g in groups]), np.array([g.trials for g in groups]))  # scored only
    rollouts, tokens = sum(len(g.acc) for g in groups), sum(g.tokens for g in groups)
    run.acct.add_training(0, rollouts, tokens)
    counts = run.ctx.verifier.pop_counts()
    return {"prefilter_rollouts": rollouts, "prefilter_tokens": tokens,
            **{f"prefilter_verify_{k}": v for k, v in counts.items()}}


def _fill_cache(run: Run) -> dict:
    """RPO's up-front fill (rpo_fill=upfront): one whole completion per prompt, booked as training cost."""
    if run.ctx.partial is None or run.cfg.rpo_fill != "upfront":
        return {}
    timer = Timer()
    rollouts, tokens = fill_cache(run.ctx, 0, timer)
    run.acct.add_training(0, rollouts, tokens)
    run.acct.seconds += timer.get("gen")  # training seconds too, as a step's generation would be
    return {"rpo_fill_rollouts": rollouts, "rpo_fill_tokens": tokens, "rpo_fill_seconds": timer.get("gen")}


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
