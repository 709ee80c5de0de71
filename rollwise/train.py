"""The training recipe: RL fine-tuning with verifiable rewards, readable top to bottom.

One step (`train_step`), for each generation batch (more than one only when the filter discards):

    select B prompts --> allocate n_i each --> roll out --> verify (acc, reward) --> observe (selector,
    allocator, outcome log) --> filter
    then: advantages --> update --> refresh (the rollout mode's cache); every N steps: held-out evaluation

Every phase calls a component behind a small interface, chosen by name in the configuration and built
by `rollwise.run`; optional behaviour is a neutral strategy (whole-path rollouts, identity reward
shaping, no critic, no KL reference), so the recipe has no branch on whether a component exists.
`Run.components()` are the stateful parts, which a checkpoint saves and restores by name.

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

from rollwise.store import checkpoint as ckpt
from rollwise.algos import algorithm
from rollwise.config import RunConfig
from rollwise.rollout.evaluate import evaluate
from rollwise.algos.update import NonFiniteError, build_batch, update_policy
from rollwise.randomness import forked_torch_rng
from rollwise.rollout.collect import (StepGroups, allocate, fill_whole, generate, group_grad_norms, merge_presamples,
                                      outcomes, roll_out, verify)
from rollwise.rollout.modes import whole_plan
from rollwise.rollout.partial import outcomes_by_start
from rollwise.rollout.scored import ScoredBatch, observed_rates
from rollwise.select.filters import is_effective
from rollwise.run import (Run, build_run, export_policy, restore, save_checkpoint, save_selector, summary,
                          write_features, write_run_info)
from rollwise.store.rundir import check_same_run, open_run_dir
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
    write_features(run)
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
    run.ctx.engine.close()
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
    run.outcomes.truncate_to(0)
    row = {"step": 0, **run.selector.start(lambda samples: _estimate_pool(run, samples)),
           **run.rollout.start(lambda store: _fill(run, store))}
    run.evals.initial = run.evals.last = _evaluate(run, 0)
    return {**row, **run.evals.initial}


def _loop(run: Run, start_step: int, wall_start: float, identity: dict) -> bool:
    """Steps start_step+1 .. cfg.steps; returns True when a signal stopped the run early."""
    cfg = run.cfg
    bar = _progress(cfg, start_step)
    interrupted = False
    with StopRequest() as stop:
        for step in range(start_step + 1, cfg.steps + 1):
            row = train_step(run, step)
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


def train_step(run: Run, step: int) -> dict:
    """One step, phase by phase; returns its metrics row."""
    timer = Timer()
    step_groups = gather_groups(run, step, timer)  # select -> allocate -> roll out -> verify -> observe -> filter
    with timer("update"):
        update = _update(run, step_groups.kept)  # advantages -> update
    with timer("sync"):  # an engine with its own copy of the weights (vLLM) samples the updated policy from now on
        run.ctx.engine.sync_weights(run.policy.model)
    refresh = run.rollout.finish_step(step_groups.rolled_out, run.streams.train, step)  # refresh (RPO's cache)
    probe = _probe(run, step) if run.cfg.probe_every and step % run.cfg.probe_every == 0 else {}
    return step_metrics(run, step, step_groups, update, refresh, probe, timer)


def gather_groups(run: Run, step: int, timer: Timer) -> StepGroups:
    """Generation batches until the filter has B groups: one batch, unless the filter discards (dynamic
    sampling), up to its cap. A prompt is drawn at most once per step."""
    cfg, ctx, rng = run.cfg, run.ctx, run.streams.train
    step_groups = StepGroups(len(ctx.pool))
    while step_groups.wants_batch(run.group_filter, cfg.batch_prompts):
        step_groups.gen_batches += 1
        prompts, predicted = _select(run, step_groups, timer)                               # select
        plan = run.rollout.plan(prompts, ctx.prompt_ids, rng, step)
        allocation = allocate(ctx, run.allocator, prompts, plan, cfg.samples_per_prompt, step, timer)  # allocate
        samples, clipped = generate(ctx, plan, allocation.counts, timer)                    # roll out
        main = verify(ctx, prompts, samples, clipped, timer)                                # verify
        groups = _observe(run, step, step_groups, prompts, predicted, plan, allocation, main, timer)  # observe
        step_groups.add(groups, run.group_filter)                                           # filter
    step_groups.finish(run.group_filter, cfg.batch_prompts)
    return step_groups


def _select(run: Run, step_groups: StepGroups, timer: Timer) -> tuple[np.ndarray, np.ndarray]:
    """B prompts not yet drawn this step, and the predictor's rates for them (read before any outcome)."""
    candidates = step_groups.candidates()
    with timer("select"):
        prompts = np.asarray(run.selector.select(candidates, min(run.cfg.batch_prompts, candidates.size),
                                                 run.streams.train))
    step_groups.used[prompts] = True
    return prompts, run.predictor.mean(prompts)


def _observe(run: Run, step: int, step_groups: StepGroups, prompts: np.ndarray, predicted, plan, allocation,
             main: list, timer: Timer) -> list:
    """Every component that learns from outcomes sees the batch: the allocator (with G when nothing else
    measured it), the outcome log, the rollout mode (for its metrics), the predictor and the selector, which
    observe every group paid for, including those the filter will discard. Returns the batch's groups,
    pre-samples merged."""
    ctx = run.ctx
    measure = run.allocator.needs_grad_norms and not allocation.presampled  # G from the main rollout only then
    norms = group_grad_norms(ctx, main, timer) if measure else np.full(len(main), np.nan)
    run.allocator.observe(prompts, *outcomes(main), norms)
    ctx.log(step, "train", main, ~plan.cached)
    ctx.log(step, "partial", main, plan.cached)
    groups = merge_presamples(ctx, allocation, main)
    run.rollout.record(plan, [g.samples for g in groups])
    step_groups.presampled += len(allocation.presampled)
    sampled = np.array([len(g.acc) > 0 for g in groups], dtype=bool)
    step_groups.unallocated += int((~sampled).sum())
    seen = np.array([g.trials > 0 for g in groups], dtype=bool)  # a group with no scored sample is not observed
    with timer("select"):
        _predictor_observes(run, step, groups)
        run.selector.observe(prompts[seen], *outcomes([g for g in groups if g.trials > 0]))
    step_groups.predictions.append(np.asarray(predicted, dtype=np.float64)[sampled])
    return [g for g, keep in zip(groups, sampled) if keep]


def _predictor_observes(run: Run, step: int, groups: list) -> None:
    """The predictor learns each prompt's whole-path rate from the samples that started from the prompt alone
    (whole groups, and the whole-path samples inside RPO groups, pre-samples included, once); samples that
    continued a prefix (a cached path, a hint; pre-samples of such a group too) are passed as `partial`."""
    whole, prefixed = outcomes_by_start(groups)
    run.predictor.observe(step, *whole, "train")
    run.predictor.observe(step, *prefixed, "partial")


def step_metrics(run: Run, step: int, step_groups: StepGroups, update: dict, refresh: dict, probe: dict,
                 timer: Timer) -> dict:
    """A step's metrics row (docs/metrics.md), gathered in one place; also books its costs."""
    rolled, kept = step_groups.rolled_out, step_groups.kept
    run.acct.add_training(len(rolled), step_groups.rollouts, step_groups.tokens, step_groups.prefix_tokens)
    row = {"step": step, "prompts": len(rolled), "rollouts": step_groups.rollouts, "tokens": step_groups.tokens,
           "gen_batches": step_groups.gen_batches, "ds_capped": step_groups.capped,
           "discarded_groups": len(rolled) - len(kept)}
    row.update(_allocation_stats(np.array([len(g.acc) for g in rolled]), step_groups))
    observed = [g for g in rolled if g.trials]  # unscored samples are unknown, not wrong (rollwise.rollout.scored)
    row.update(group_stats(*outcomes(observed)))
    row.update(_prediction_quality("pred", step_groups.predicted(), observed_rates(rolled)))
    row.update({f"verify_{k}": v for k, v in run.ctx.verifier.pop_counts().items()}, unscored=step_groups.unscored)
    scored = ScoredBatch.from_groups(kept)
    kept_effective = [g for g in kept if is_effective(g.acc[g.scored])]
    row.update(groups=len(kept), effective_ratio=len(kept_effective) / max(len(kept), 1),
               reward_mean=float(scored.rewards.mean()) if scored.rewards.size else None,
               acc_mean=float(scored.acc.mean()) if scored.acc.size else None)
    row.update(update)
    row.update(refresh)
    row.update(probe)
    for phase in ("select", "gen", "verify", "gradnorm", "update"):
        row[f"time_{phase}"] = timer.get(phase)
    row["time_weight_sync"] = timer.get("sync")
    run.acct.seconds += sum(timer.seconds.values())
    return row


def _allocation_stats(trials: np.ndarray, step_groups: StepGroups) -> dict:
    """How the step's samples were spread over its prompts (constant under the fixed allocator)."""
    if trials.size == 0:
        return {}
    return {"alloc_min": int(trials.min()), "alloc_max": int(trials.max()), "alloc_std": float(trials.std()),
            "alloc_unallocated": step_groups.unallocated, "alloc_presampled": step_groups.presampled}


def _update(run: Run, kept: list) -> dict:
    """Advantages of the kept groups' scored samples, then the policy update (unscored ones never enter it)."""
    cfg, algo = run.cfg, algorithm(run.cfg.algo)
    scored = ScoredBatch.from_groups(kept)
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
    return update_policy(run.policy.model, run.optimizer, run.scheduler, batch, run.settings, run.critic,
                         run.reference)


def _evaluate(run: Run, step: int) -> dict:
    """Held-out evaluation; its rollouts and verifier counts are booked as evaluation, not training."""
    cfg, policy = run.cfg, run.policy
    result = evaluate(run.ctx.engine, policy.codec, run.ctx.verifier, run.eval_pool.items,
                      temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=policy.max_new_tokens,
                      samples=cfg.eval_samples, seed=cfg.seed * 100_003 + step)
    run.acct.add_evaluation(result.pop("eval_rollouts"), result.pop("eval_tokens"))
    successes, trials = result.pop("eval_successes"), result.pop("eval_trials")
    if successes is not None:
        run.outcomes.write(step, "eval", np.flatnonzero(trials > 0), successes[trials > 0], trials[trials > 0])
    result.update({f"eval_verify_{k}": v for k, v in run.ctx.verifier.pop_counts().items()})
    return result


def _probe(run: Run, step: int) -> dict:
    """Prediction quality on a uniformly drawn probe: free of the selector's own selection bias.

    Its prompts come from the probe's own stream and its sampling runs under a forked torch RNG, so a
    run with the probe makes exactly the selections and updates of a run without it.
    """
    cfg, ctx, stream = run.cfg, run.ctx, run.streams.probe
    size = min(cfg.probe_size, len(ctx.pool))
    indices = np.sort(stream.choice(len(ctx.pool), size=size, replace=False))
    predicted = run.predictor.mean(indices)
    with forked_torch_rng(int(stream.integers(2**62))):
        groups = roll_out(ctx, indices, cfg.samples_per_prompt, Timer(), _whole(run, indices))
    ctx.log(step, "probe", groups)
    counts = ctx.verifier.pop_counts()
    run.acct.add_evaluation(sum(len(g.samples) for g in groups), sum(g.tokens for g in groups))
    return {**_prediction_quality("probe", predicted, observed_rates(groups)),
            **{f"probe_verify_{k}": v for k, v in counts.items()}}


def _prediction_quality(prefix: str, predicted, observed) -> dict:
    if predicted is None:
        return {}
    known = np.isfinite(np.asarray(observed, dtype=np.float64))  # a group none of whose samples was scored: unknown
    predicted, observed = np.asarray(predicted)[known], np.asarray(observed)[known]
    return {f"{prefix}_spearman": spearman(predicted, observed), f"{prefix}_mae": mae(predicted, observed)}


def _whole(run: Run, indices: np.ndarray):
    return whole_plan(indices, run.ctx.prompt_ids, run.policy.max_new_tokens)


def _estimate_pool(run: Run, samples: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """An up-front pass rate of every prompt (the offline filter's), booked as training cost before step 1."""
    indices = np.arange(len(run.ctx.pool))
    groups = roll_out(run.ctx, indices, samples, Timer(), _whole(run, indices))
    run.ctx.log(0, "prefilter", groups)
    successes, trials = outcomes(groups)
    run.predictor.observe(0, indices, successes, trials, "prefilter")
    rollouts, tokens = int(trials.sum()), sum(g.tokens for g in groups)
    run.acct.add_training(0, rollouts, tokens)
    counts = run.ctx.verifier.pop_counts()
    return successes, trials, {"prefilter_rollouts": rollouts, "prefilter_tokens": tokens,
                               **{f"prefilter_verify_{k}": v for k, v in counts.items()}}


def _fill(run: Run, store) -> tuple[int, int, float]:
    """An up-front fill of the rollout mode (RPO's cache): whole completions, booked as training cost."""
    timer = Timer()
    indices = np.arange(len(run.ctx.pool))
    rollouts, tokens = fill_whole(run.ctx, indices, _whole(run, indices), 0, store, timer)
    run.acct.add_training(0, rollouts, tokens)
    run.acct.seconds += timer.get("gen")  # training seconds too, as a step's generation would be
    return rollouts, tokens, timer.get("gen")


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
