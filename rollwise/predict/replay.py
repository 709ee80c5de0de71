"""Offline replay of outcome logs through predictors and selection rules (`rollwise replay`).

For each logged step, in order: every predictor first predicts the step's `train` groups (its Beta
per prompt, read before it sees them), each selection rule chooses k of those logged groups from
that prediction, and only then does the predictor observe every row the step logged (presample,
train, probe, prefilter; `partial` rows are passed and ignored; `eval` rows index the held-out set
and are skipped). So a prediction never peeks at its outcome, and a replay takes seconds.

Reported per phase of the run (the first 10% of train steps, the middle, the last 10%), separately
for all groups, groups of prompts seen before (any whole-path observation earlier in the log) and
never seen: Spearman rank correlation of predicted and observed rates (pooled over the phase; for
all groups also the mean of per-step values), the same with ties among the predictions broken at
random (`metrics.spearman_ties_broken`: exact ties that a per-prompt Beta produces for prompts with
equal histories otherwise earn credit when many groups come out 0/8), mean absolute error, Brier score per completion,
reliability bins and their expected calibration error, and the AUC with which P(zero variance) =
P(all n wrong) + P(all n right) under the predictor's beta-binomial ranks the groups that came out
zero-variance. And per rule, the share of effective (mixed) groups among the k it chose (and their
mean observed rate: whether it drifts to easy or hard prompts): on a log of uniformly drawn prompts,
an unbiased estimate of what that rule would have trained on, with the predictor having seen what
the logged run saw. Stateful rules (GRESO) observe only what they chose. `oracle` is the ceiling:
the share when the k are chosen knowing the outcomes (all mixed groups first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Callable

import numpy as np

from rollwise.predict import metrics
from rollwise.predict.base import EVIDENCE_KINDS, zero_variance_chance
from rollwise.predict.features import PromptFeatures
from rollwise.predict.run_features import load_run_features
from rollwise.predict.outcomes import OutcomeLogError, Outcomes, read_header, read_outcomes

PHASES = ("first", "middle", "last")
ORACLE = "oracle"  # the k logged groups a rule knowing the outcomes would choose: mixed ones first
SUBSETS = ("all", "seen", "unseen")


@dataclass
class RunLog:
    """One run's outcome rows (validated), its header and its prompts' features."""

    path: Path
    header: dict
    rows: list[Outcomes]
    features: PromptFeatures

    @property
    def pool_size(self) -> int:
        return int(self.header["pool_size"])

    def train_steps(self) -> list[int]:
        return sorted({r.step for r in self.rows if r.kind == "train"})

    def group_size(self) -> int:
        """The most common number of trials of a train group (n of the mixed-chance formula)."""
        trials = np.concatenate([r.trials for r in self.rows if r.kind == "train"] or [np.array([8])])
        values, counts = np.unique(trials, return_counts=True)
        return int(values[np.argmax(counts)])


def load_run(path: str | Path, group_keys: tuple[str, ...] | None = None) -> RunLog:
    """A run directory (or its outcomes.jsonl) with features from features.npz or config.yaml."""
    path = Path(path)
    log_path = path / "outcomes.jsonl" if path.is_dir() else path
    if not log_path.is_file():
        raise FileNotFoundError(f"{path}: no outcomes.jsonl (runs of this rollwise write one; older runs cannot "
                                "be replayed)")
    rows = read_outcomes(log_path)
    header = read_header(log_path)
    for line, (before, after) in enumerate(zip(rows, rows[1:]), start=3):
        if after.step < before.step:
            raise OutcomeLogError(f"{log_path}:{line}: step {after.step} after step {before.step}; rows must be "
                                  "in step order")
    features = load_run_features(log_path.parent, group_keys)
    if len(features) != header["pool_size"]:
        raise OutcomeLogError(f"{log_path}:1: pool_size {header['pool_size']} but the run's features describe "
                              f"{len(features)} prompts; they belong to another pool")
    return RunLog(log_path, header, rows, features)


@dataclass
class Replayed:
    """Per logged train group: when, which prompt, what was predicted, what happened."""

    ordinal: np.ndarray    # index of the train step (0 .. T-1)
    ids: np.ndarray
    a: np.ndarray
    b: np.ndarray
    successes: np.ndarray
    trials: np.ndarray
    seen: np.ndarray       # observed (whole path) before this step
    steps: int             # T
    rule_shares: dict[str, np.ndarray] = field(default_factory=dict)  # rule -> effective share per train step
    rule_rates: dict[str, np.ndarray] = field(default_factory=dict)   # rule -> mean observed rate of its choice

    @property
    def mean(self) -> np.ndarray:
        return self.a / (self.a + self.b)


def replay(log: RunLog, predictor, rules: dict[str, Callable[[], object]] | None = None, rule_factor: int = 4,
           repeats: int = 4, seed: int = 0) -> Replayed:
    """Replay one log through one predictor (and rules reading it); see the module docstring."""
    rules = rules or {}
    rule_copies = {name: [make() for _ in range(repeats)] for name, make in rules.items()}
    rngs = {name: [np.random.default_rng([seed, i, r]) for r in range(repeats)] for i, name in enumerate(rules)}
    shares: dict[str, list[float]] = {name: [] for name in (*rules, ORACLE)}
    rates: dict[str, list[float]] = {name: [] for name in (*rules, ORACLE)}
    seen = np.zeros(log.pool_size, dtype=bool)
    records: list[tuple] = []
    ordinal = 0
    for step, rows in groupby(log.rows, key=lambda r: r.step):
        rows = list(rows)
        train = [r for r in rows if r.kind == "train"]
        if train:
            ids = np.concatenate([r.ids for r in train])
            successes = np.concatenate([r.successes for r in train])
            trials = np.concatenate([r.trials for r in train])
            a, b = predictor.beta(ids)
            records.append((np.full(ids.size, ordinal), ids, a, b, successes, trials, seen[ids].copy()))
            mixed = (successes > 0) & (successes < trials)
            k = max(1, math.ceil(ids.size / rule_factor))
            for name in rules:
                share, rate = _rule_share(rule_copies[name], rngs[name], predictor, ids, successes, trials, mixed, k)
                shares[name].append(share)
                rates[name].append(rate)
            best = np.argsort(~mixed, kind="stable")[:k]  # what knowing the outcomes would have chosen
            shares[ORACLE].append(float(mixed[best].mean()))
            rates[ORACLE].append(float((successes[best] / trials[best]).mean()))
            ordinal += 1
        for r in rows:
            if r.kind != "eval":
                predictor.observe(step, r.ids, r.successes, r.trials, r.kind)
                if r.kind in EVIDENCE_KINDS:
                    seen[r.ids] = True
    if not records:
        raise OutcomeLogError(f"{log.path}: no train rows to replay")
    columns = [np.concatenate(c) for c in zip(*records)]
    return Replayed(*columns, steps=ordinal, rule_shares={n: np.array(v) for n, v in shares.items()},
                    rule_rates={n: np.array(v) for n, v in rates.items()})


def _rule_share(copies, rngs, predictor, ids, successes, trials, mixed, k) -> tuple[float, float]:
    """Mean effective share and mean observed rate of the k groups each copy of a rule chose."""
    values, rates = [], []
    position = {int(i): j for j, i in enumerate(ids)}
    for rule, rng in zip(copies, rngs):
        chosen = np.asarray(rule.select(predictor, ids, k, rng), dtype=np.int64)
        where = np.array([position[int(i)] for i in chosen], dtype=np.int64)
        values.append(float(mixed[where].mean()))
        rates.append(float((successes[where] / trials[where]).mean()))
        rule.observe(chosen, successes[where], trials[where])
    return float(np.mean(values)), float(np.mean(rates))


def phase_of(ordinal: np.ndarray, steps: int) -> np.ndarray:
    """0 (first 10% of train steps), 1 (middle) or 2 (last 10%) per step index; at least one step each."""
    edge = max(1, math.ceil(0.1 * steps))
    return np.where(ordinal < edge, 0, np.where(ordinal >= steps - edge, 2, 1))


def summarize(rep: Replayed) -> dict:
    """Metrics per phase and subset (see the module docstring), plus the rules' effective shares."""
    phase = phase_of(rep.ordinal, rep.steps)
    step_phase = phase_of(np.arange(rep.steps), rep.steps)
    mean = rep.mean
    zero = (rep.successes == 0) | (rep.successes == rep.trials)
    p_zero = zero_variance_chance(rep.a, rep.b, rep.trials)
    out: dict = {}
    for index, name in enumerate(PHASES + ("overall",)):
        in_phase = phase == index if name != "overall" else np.ones(phase.size, dtype=bool)
        block = {}
        for subset in SUBSETS:
            m = in_phase & {"all": True, "seen": rep.seen, "unseen": ~rep.seen}[subset]
            block[subset] = _measures(mean[m], rep.successes[m], rep.trials[m], p_zero[m], zero[m])
        block["all"]["spearman_per_step"] = _per_step_spearman(rep, mean, in_phase, metrics.spearman)
        block["all"]["spearman_ties_broken_per_step"] = _per_step_spearman(rep, mean, in_phase,
                                                                           metrics.spearman_ties_broken)
        steps_in = step_phase == index if name != "overall" else np.ones(rep.steps, dtype=bool)
        block["rules"] = {rule: float(v[steps_in].mean()) if steps_in.any() else None
                          for rule, v in rep.rule_shares.items()}
        block["rule_rates"] = {rule: float(v[steps_in].mean()) if steps_in.any() else None
                               for rule, v in rep.rule_rates.items()}
        out[name] = block
    return out


def _measures(p, s, n, p_zero, zero) -> dict:
    bins = metrics.calibration(p, s, n)
    return {"groups": int(p.size), "spearman": metrics.spearman(p, s / n) if p.size else None,
            "spearman_ties_broken": metrics.spearman_ties_broken(p, s / n) if p.size else None,
            "mae": metrics.mean_abs_error(p, s, n), "brier": metrics.brier(p, s, n),
            "ece": metrics.expected_calibration_error(bins), "zero_var_auc": metrics.auc(p_zero, zero),
            "zero_var_share": float(zero.mean()) if zero.size else None, "calibration": bins}


def _per_step_spearman(rep: Replayed, mean, in_phase, measure) -> float | None:
    values = []
    for t in np.unique(rep.ordinal[in_phase]):
        m = rep.ordinal == t
        value = measure(mean[m], rep.successes[m] / rep.trials[m])
        if value is not None:
            values.append(value)
    return float(np.mean(values)) if values else None
