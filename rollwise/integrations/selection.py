"""Late-bound prompt selection for trainers that own their generation loop (TRL, verl).

A trainer plug-in asks `LateSelection.choose()` for the prompts of a generation batch right before
it generates, and hands the verified outcomes of that batch to `observe()` as soon as they exist,
so the next `choose()` already sees them: no generation is chosen from stale posteriors.

Every process of a data-parallel job holds its own `LateSelection` built with the same seed, and
observes the same gathered outcomes, so all processes choose the same prompts without sending the
choice around (the plug-in checks that they agree). Framework-free: numpy and rollwise selectors
only, so the logic is unit-tested without a trainer.

    sel = LateSelection(MoPPSSelector(len(dataset)), seed=0)
    ids = sel.choose(8)                          # 8 row indices of the dataset
    sel.observe(ids, successes, trials)          # counts per chosen prompt, gathered over processes
"""

from __future__ import annotations

import logging

import numpy as np

from rollwise.select.quality import group_stats, mae, spearman

log = logging.getLogger(__name__)


class _Sized:
    """Stands in for a pool where a selector builder only needs the pool's length."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


def build_named_selector(name: str, pool_size: int):
    """A rollwise selector by its command-line name, with rollwise's defaults (docs/methods.md published settings)."""
    from rollwise.config import RunConfig
    from rollwise.select import SELECTORS

    if name == "offline":
        raise ValueError("selector 'offline' needs pass rates measured before training: build "
                         "rollwise.select.offline.OfflineFilterSelector, call .fit(successes, trials) and pass the object")
    if name not in SELECTORS:
        raise ValueError(f"unknown selector {name!r}: expected one of {', '.join(s for s in SELECTORS if s != 'offline')}"
                         " or a selector object")
    from rollwise.predict.beta import BetaPredictor
    from rollwise.select.predictive import PredictiveSelector

    cfg = RunConfig(selector=name)
    selector = SELECTORS.build(name, cfg, _Sized(pool_size), BetaPredictor(pool_size, decay=cfg.mopps_decay))
    if isinstance(selector, PredictiveSelector):
        selector.observes_predictor = True  # no training run feeds the predictor here: the selector does
    return selector


def selector_pool_size(selector) -> int | None:
    """The pool length a selector was built for (its first 1-D state array), or None when it keeps none."""
    for value in selector.state_dict().values():
        if isinstance(value, np.ndarray) and value.ndim == 1:
            return len(value)
    return None


def group_counts(rewards, prompts: int, group: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Successes and trials per prompt from rewards laid out prompt-major (prompt 0's `group` rows first).

    A reward >= threshold is a success; NaN (no reward function scored the row) is not a trial.

    >>> group_counts([1.0, 0.0, float("nan"), 1.0], prompts=2, group=2, threshold=1.0)
    (array([1, 1]), array([2, 1]))
    """
    values = np.asarray(rewards, dtype=np.float64)
    if values.size != prompts * group:
        raise ValueError(f"got {values.size} rewards for {prompts} prompts x {group} samples")
    values = values.reshape(prompts, group)
    scored = ~np.isnan(values)
    successes = (scored & (np.nan_to_num(values, nan=-np.inf) >= threshold)).sum(axis=1)
    return successes, scored.sum(axis=1)


class LateSelection:
    """A selector, its random stream (seeded with `seed`: an int or a sequence of ints, as numpy takes)
    and the record of what it chose and saw.

    `record` (one dict per generation: ids, predicted success before the outcomes, successes,
    trials) is kept for the last `keep_records` generations; plug-ins write it to a log as it grows.
    `outcome_log` (a `rollwise.predict.outcomes.OutcomeLog`, set by the plug-in on its main process):
    every observation is appended to it as kind `train`, step = the generation; its length rides in
    `state_dict`, so a resumed run cuts it back to the checkpoint and a new run starts it afresh.
    """

    def __init__(self, selector, seed, pool_size: int | None = None, keep_records: int = 1000) -> None:
        for method in ("select", "observe", "predict", "state_dict", "load_state_dict"):
            if not callable(getattr(selector, method, None)):
                raise TypeError(f"selector {selector!r} has no {method}() (rollwise.select.base.Selector)")
        built_for = selector_pool_size(selector)
        if pool_size is not None and built_for is not None and built_for != pool_size:
            raise ValueError(f"the selector was built for {built_for} prompts but the dataset has {pool_size} rows: "
                             "build it with the training dataset's length")
        if pool_size is None and built_for is None:
            raise ValueError("pass pool_size: the selector keeps no per-prompt state to read it from")
        self.selector = selector
        self.pool_size = pool_size if pool_size is not None else built_for
        self.rng = np.random.default_rng(seed)
        self.generation = 0  # generations chosen so far
        self.seen = np.zeros(self.pool_size, dtype=bool)
        self.pending: np.ndarray | None = None  # ids chosen and not yet observed
        self.pending_predicted: np.ndarray | None = None
        self.records: list[dict] = []
        self.keep_records = keep_records
        self.outcome_log = None
        self._log_continues = False  # True once a checkpoint said where the log ends (resume)

    def choose(self, k: int) -> np.ndarray:
        """k distinct row indices for the next generation, from the freshest posteriors."""
        # A generation whose outcomes never arrived (an exception inside the trainer's step): choose
        # afresh rather than observe later outcomes under the wrong ids.
        self.pending = self.pending_predicted = None
        self.pending, self.pending_predicted = self.draw(k)
        return self.pending

    def draw(self, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        """k distinct ids from the selector and its predictions for them (None when it makes none).

        Predictions are read before any outcome of these prompts exists, so prediction quality never peeks.
        """
        if k > self.pool_size:
            raise ValueError(f"a generation needs {k} distinct prompts but the dataset has {self.pool_size}: "
                             "use a larger dataset or fewer prompts per generation")
        ids = np.asarray(self.selector.select(np.arange(self.pool_size), k, self.rng), dtype=np.int64)
        if ids.size != k or np.unique(ids).size != k:
            raise RuntimeError(f"selector {getattr(self.selector, 'name', self.selector)} returned {ids.size} ids "
                               f"({np.unique(ids).size} distinct) for {k} prompts")
        predicted = self.selector.predict(ids)
        self.generation += 1
        return ids, None if predicted is None else np.asarray(predicted, dtype=np.float64)

    def observe(self, successes, trials) -> dict:
        """Outcomes of the pending generation (counts per chosen prompt, in `choose` order); returns metrics."""
        if self.pending is None:
            raise RuntimeError("observe() without a pending choose(): outcomes would have no prompts to go to")
        row = self.record(self.pending, self.pending_predicted, successes, trials)
        self.pending = self.pending_predicted = None
        return row

    def record(self, ids: np.ndarray, predicted: np.ndarray | None, successes, trials) -> dict:
        """Feed outcomes of distinct prompts `ids` to the selector, log them, and return the metrics."""
        successes = np.asarray(successes, dtype=np.float64)
        trials = np.asarray(trials, dtype=np.float64)
        if successes.shape != ids.shape or trials.shape != ids.shape:
            raise ValueError(f"observe got {successes.shape} successes and {trials.shape} trials for {ids.size} prompts")
        if (trials < 0).any() or (successes < 0).any() or (successes > trials).any():
            raise ValueError("observe: need 0 <= successes <= trials for every prompt")
        scored = trials > 0  # a prompt whose every completion was unscorable teaches the selector nothing
        self.selector.observe(ids[scored], successes[scored], trials[scored])
        self.seen[ids] = True
        rates = np.divide(successes, trials, out=np.zeros_like(successes), where=scored)
        self.records.append({"generation": self.generation, "ids": ids.tolist(),
                             "predicted": None if predicted is None else predicted.tolist(),
                             "successes": successes.tolist(), "trials": trials.tolist()})
        del self.records[:-self.keep_records]
        if self.outcome_log is not None:
            self._log_outcomes(ids, successes, trials)
        return self.metrics(ids[scored], rates[scored], successes[scored], trials[scored],
                            None if predicted is None else predicted[scored])

    def _log_outcomes(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        if not self._log_continues:  # the first row of a run that did not resume: a fresh log
            if self.outcome_log.offset():
                log.warning("%s: a new run starts a new outcome log (resume from a checkpoint to continue it)",
                            self.outcome_log.path)
                self.outcome_log.truncate_to(0)
            self._log_continues = True
        self.outcome_log.write(self.generation, "train", ids, np.rint(successes), np.rint(trials))

    def metrics(self, ids, rates, successes, trials, predicted) -> dict:
        """rollwise's metric names (docs/metrics.md) for one generation's selected groups."""
        row = {"acc_mean": float(successes.sum() / max(trials.sum(), 1)), "selected_distinct": int(self.seen.sum())}
        if len(ids):
            stats = group_stats(successes, trials)
            row.update(stats, effective_ratio=1.0 - stats["zero_var_ratio"])
        if predicted is not None and len(ids):
            row.update(pred_spearman=spearman(predicted, rates), pred_mae=mae(predicted, rates),
                       selected_predicted=float(predicted.mean()))
        return {k: v for k, v in row.items() if v is not None}

    def state_dict(self) -> dict:
        return {"selector": self.selector.state_dict(), "rng": self.rng.bit_generator.state,
                "generation": self.generation, "seen": self.seen.copy(),
                "outcomes_offset": self.outcome_log.offset() if self.outcome_log is not None else -1}

    def load_state_dict(self, state: dict) -> None:
        self.selector.load_state_dict(state["selector"])
        self.rng.bit_generator.state = state["rng"]
        self.generation = int(state["generation"])
        self.seen = np.asarray(state["seen"], dtype=bool).copy()
        self.pending = self.pending_predicted = None
        offset = int(state.get("outcomes_offset", -1))
        if self.outcome_log is not None and offset >= 0:
            if self.outcome_log.offset() >= offset:
                self.outcome_log.truncate_to(offset)  # generations after the checkpoint come again
            else:
                log.warning("%s is shorter than at the checkpoint; appending to it", self.outcome_log.path)
            self._log_continues = True


def save_state(state: dict, path) -> None:
    """Write a nested state dict without pickle: numpy arrays into an .npz, everything else as JSON in it.

    Written to a temporary name and renamed, so a reader sees the old file or the whole new one.
    """
    import io
    import json
    from pathlib import Path

    from rollwise.store import safefiles

    arrays, plain = {}, {}

    def split(value, key):
        if isinstance(value, np.ndarray):
            arrays[key] = value
            return {"__array__": key}
        if isinstance(value, dict):
            return {k: split(v, f"{key}/{k}") for k, v in value.items()}
        if isinstance(value, np.generic):
            return value.item()
        return value

    plain = split(state, "state")
    buffer = io.BytesIO()
    np.savez(buffer, __json__=np.array(json.dumps(plain)), **arrays)
    safefiles.write_atomic(Path(path), buffer.getvalue())  # never through a link


def load_state(path) -> dict:
    """Read what `save_state` wrote (no pickle is ever loaded)."""
    import json

    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "__json__"}
        plain = json.loads(str(data["__json__"]))

    def join(value):
        if isinstance(value, dict):
            if set(value) == {"__array__"}:
                return arrays[value["__array__"]]
            return {k: join(v) for k, v in value.items()}
        return value

    return join(plain)
