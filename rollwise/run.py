"""One run's parts: built once from its config, checkpointed and restored by name, written out at the end.

`Run` holds everything the recipe (`rollwise.train`) uses; `Run.components()` names its stateful
parts, which a checkpoint saves and restores through `state_dict` / `load_state_dict`. A new stateful
part (an allocator's estimates, a rollout cache) is one more entry there, not a parameter of every
helper of the loop, nor a line to save and one to restore.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rollwise.algos import algorithm
from rollwise.algos.critic import Critic
from rollwise.algos.reference import Reference, build_reference
from rollwise.algos.update import NonFiniteError, UpdateSettings, build_batch
from rollwise.allocate import build_allocator
from rollwise.allocate.base import Allocator
from rollwise.config import RunConfig
from rollwise.data.pool import PromptPool, build_pools
from rollwise.policy.models import Policy, load_policy, model_identity
from rollwise.predict.base import Predictor
from rollwise.predict.features import FEATURES_FILE, PromptFeatures
from rollwise.predict.outcomes import OutcomeLog
from rollwise.predict.registry import build_run_predictor
from rollwise.randomness import RandomStreams
from rollwise.rollout.collect import RolloutContext
from rollwise.rollout.engine import SamplingParams
from rollwise.rollout.engines import build_engine
from rollwise.rollout.modes import RolloutMode, build_rollout_mode
from rollwise.rollout.shaping import RewardShaping
from rollwise.select import build_selector
from rollwise.select.base import Selector
from rollwise.select.filters import GroupFilter, build_filter
from rollwise.store import checkpoint as ckpt
from rollwise.track import Accounting, MetricsLog
from rollwise.verify.guard import GuardedVerifier
from rollwise.verify.verifiers import build_verifier


@dataclass
class Evaluations:
    """The step-0 and latest held-out evaluations (checkpointed: the summary reports both)."""

    initial: dict | None = None
    last: dict | None = None

    def state_dict(self) -> dict:
        return {"initial": self.initial, "last": self.last}

    def load_state_dict(self, state: dict) -> None:
        self.initial, self.last = state["initial"], state["last"]


@dataclass(kw_only=True)
class Run:
    """One run's parts, built once from its config; see `components()` for what a checkpoint holds."""

    cfg: RunConfig
    out: Path
    policy: Policy
    ctx: RolloutContext  # the pool, codec, engine, verifier, sampling parameters, shaping, outcome log
    eval_pool: PromptPool
    rollout: RolloutMode  # whole completions, or RPO's partial rollouts
    predictor: Predictor  # every prompt's current success rate: read by the selector, GVM and RPO's hints
    features: PromptFeatures  # the prompts' groups and lengths the predictor reads (features.npz in the run)
    selector: Selector
    allocator: Allocator
    group_filter: GroupFilter
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    settings: UpdateSettings
    critic: Critic  # PPO's value head, or none
    reference: Reference  # the KL penalty's frozen policy, or none
    acct: Accounting
    streams: RandomStreams
    evals: Evaluations
    metrics: MetricsLog
    log: Callable[[str], None]

    @property
    def outcomes(self):
        """The run's outcome log (outcomes.jsonl), which the rollout context writes to."""
        return self.ctx.outcomes

    def components(self) -> dict:
        """The stateful parts, by checkpoint key: add a new component here and nowhere else."""
        return {"model": self.policy.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "predictor": self.predictor, "selector": self.selector, "allocator": self.allocator,
                "rollout": self.rollout,
                "critic": self.critic, "accounting": self.acct, "random": self.streams, "evals": self.evals}

    def identity(self) -> dict:
        """What makes a checkpoint belong to this run beyond its config: the data and the model."""
        return {"training pool": self.ctx.pool.content_hash(), "held-out set": self.eval_pool.content_hash(),
                "model": model_identity(self.cfg, self.policy.source)}


def build_run(cfg: RunConfig, out: Path, log) -> Run:
    """Build every part of a run from its config (nothing here computes a rollout)."""
    train_pool, eval_pool = build_pools(cfg)
    policy = load_policy(cfg, log)
    engine = build_engine(cfg, policy, log)
    params = SamplingParams(cfg.temperature, cfg.top_p, policy.max_new_tokens)
    verifier = GuardedVerifier(build_verifier(cfg.task, cfg.verifier, cfg.task_options), cfg.verify_workers,
                               cfg.verify_timeout, cfg.verify_memory_mb,
                               batch_budget=cfg.verify_batch_budget or None,
                               breaker_timeouts=cfg.verify_breaker_timeouts or None,
                               breaker_rate=cfg.verify_breaker_rate)
    ctx = RolloutContext(train_pool, policy.codec, engine, verifier, params, cfg.reward,
                         grad_norms=_grad_norm_measure(cfg, policy),
                         shaping=RewardShaping.from_config(cfg, policy.max_new_tokens),
                         outcomes=OutcomeLog(out / "outcomes.jsonl", len(train_pool), len(eval_pool)))
    predictor, features = build_run_predictor(cfg, train_pool)
    critic = algorithm(cfg.algo).build_critic(cfg, policy.model)
    trainable = [p for p in policy.model.parameters() if p.requires_grad] + critic.parameters()
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (cfg.lr_warmup_steps + 1)))
    settings = UpdateSettings(cfg.algo, cfg.temperature, cfg.clip_low, cfg.clip_high, cfg.grad_clip, cfg.minibatches,
                              cfg.updates_per_step, cfg.micro_batch, cfg.nonfinite)
    return Run(cfg=cfg, out=out, policy=policy, ctx=ctx, eval_pool=eval_pool,
               rollout=build_rollout_mode(cfg, len(train_pool), policy.max_new_tokens, policy.codec.eos_token_id,
                                          predictor),
               predictor=predictor, features=features, selector=build_selector(cfg, train_pool, predictor),
               allocator=build_allocator(cfg, len(train_pool), predictor),
               group_filter=build_filter(cfg), optimizer=optimizer, scheduler=scheduler, settings=settings,
               critic=critic, reference=build_reference(cfg, policy.model), acct=Accounting(),
               streams=RandomStreams(cfg.seed), evals=Evaluations(),
               metrics=MetricsLog(out / "metrics.jsonl", out / "tb", cfg.report_to, cfg.to_sections()), log=log)


def _grad_norm_measure(cfg: RunConfig, policy: Policy):
    """GVM's G_i: per-sample norms of the log-likelihood gradient w.r.t. the token embeddings."""
    from rollwise.allocate.gradnorm import sequence_embedding_grad_norms, suffix_only

    def measure(samples: list) -> np.ndarray:
        batch = suffix_only(build_batch(samples, np.zeros(len(samples)), policy.codec.pad_token_id), samples)
        return sequence_embedding_grad_norms(policy.model, batch, cfg.temperature, micro_batch=cfg.micro_batch)

    return measure


# ---------------------------------------------------------------------------- checkpoints and outputs


def save_checkpoint(run: Run, step: int, identity: dict) -> None:
    for name, p in run.policy.model.named_parameters():
        if not torch.isfinite(p).all():
            raise NonFiniteError(f"parameter {name} holds NaN/inf at step {step}: no checkpoint written; "
                                 "resume from the previous checkpoint with a lower learning rate")
    state = {"step": step, "components": {k: c.state_dict() for k, c in run.components().items()},
             "metrics_offset": run.metrics.offset(), "outcomes_offset": run.outcomes.offset(), "config": run.cfg.to_dict(), "identity": identity}
    ckpt.save_checkpoint(run.out, step, state, run.cfg.keep_checkpoints)


def restore(run: Run, state: dict) -> int:
    saved = state.get("components", {})
    for name, component in run.components().items():
        if name not in saved:
            raise ckpt.CheckpointError(f"the checkpoint of step {state['step']} has no '{name}' state (written by "
                                       "another rollwise version?): start a new run directory")
        component.load_state_dict(saved[name])
    run.metrics.truncate_to(state["metrics_offset"])
    if "outcomes_offset" not in state:
        raise ckpt.CheckpointError(f"the checkpoint of step {state['step']} has no outcome-log offset (written by "
                                   "another rollwise version?): start a new run directory")
    run.outcomes.truncate_to(state["outcomes_offset"])
    return int(state["step"])


def write_features(run: Run) -> None:
    """features.npz beside the outcome log, so that `rollwise replay` reads the run without its pool."""
    run.features.save(run.out / FEATURES_FILE)


def write_run_info(run: Run, identity: dict, resumed: bool) -> None:
    """run.json: what this run is (data and model identity) and which verifier protections were active."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        rollwise_version = version("rollwise")
    except PackageNotFoundError:
        rollwise_version = "unknown"
    info = {"rollwise_version": rollwise_version, "identity": identity, "resumed": resumed,
            "verifier": run.ctx.verifier.name,
            "verifier_protections": getattr(run.ctx.verifier, "protections", None)}
    ckpt.atomic_json(info, run.out / "run.json")


def save_selector(run: Run) -> None:
    from rollwise.select.priors import save_posteriors

    save_posteriors(run.predictor, run.ctx.pool, run.out / "selector.npz", counts=run.selector)


def export_policy(run: Run) -> str:
    """The trained policy as a Hugging Face model directory that `from_pretrained` and `--model DIR` load."""
    from rollwise.policy.export import save_policy

    return str(save_policy(run.policy, run.out / "model", merge_lora=run.cfg.merge_lora))


def summary(run: Run, interrupted: bool) -> dict:
    cfg = run.cfg
    return {"out_dir": cfg.out_dir, "model": run.policy.source, "steps": cfg.steps, "interrupted": interrupted,
            "initial_eval": run.evals.initial, "final_eval": run.evals.last, **run.acct.state_dict()}
