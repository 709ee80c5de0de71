"""MoPPS (and rollwise's other selectors) inside Hugging Face TRL's GRPOTrainer, without copying it.

    from trl import GRPOConfig, GRPOTrainer
    from rollwise.integrations.trl import reward_function, with_selection

    Trainer = with_selection(GRPOTrainer)                     # GRPOTrainer + late prompt selection
    trainer = Trainer(model=model, args=GRPOConfig(...), train_dataset=ds,   # ds: prompt, answer columns
                      reward_funcs=reward_function("basic_arithmetic"), selector="mopps")
    trainer.train()                                           # resume_from_checkpoint=... works too

How it plugs in (TRL 1.16; docs/trl.md has the details):
- **Choosing late.** TRL's dataloader draws prompts through a `RepeatSampler` one batch or more
  ahead of the outcomes (accelerate prefetches a batch, the Trainer pulls all gradient-accumulation
  batches at once, dataloader workers prefetch more), so a sampler would choose from stale
  posteriors. The mixin instead overrides `_generate_and_score_completions`, the point where TRL is
  about to generate: it discards the rows the dataloader delivered and builds the generation batch
  from the prompts the selector chooses now (each repeated `num_generations` times, sliced per
  process as TRL's sampler would). The rows still come from `train_dataset`, so reward functions get
  every column as usual.
- **Observing at once.** `_calculate_rewards` returns the rewards gathered from all processes; the
  mixin counts each prompt's successes there (the reward function named by `success_reward`, a
  value >= `success_threshold` is a success, None/NaN rows are not counted) and updates the
  posteriors before the generation's loss is even computed. The next generation's choice sees them:
  zero generations of lag. What remains: with `steps_per_generation > 1` or `num_iterations > 1`,
  one generation feeds several optimiser steps, so a choice reflects the policy of the previous
  generation, as TRL's own batch reuse does. Evaluation (model in eval mode) is passed through
  untouched and never observed.
- **Identical on every process.** Each process holds the same selector, seeded from `args.seed`,
  and observes the same gathered rewards, so all choose the same prompts; the choice is all-gathered
  and compared once per generation (a mismatch stops training with an error).
- **Checkpoints.** The selector state, its random stream and the selection log's length are saved
  as `rollwise_selection.npz` inside every TRL checkpoint directory and restored by
  `train(resume_from_checkpoint=...)` (the pattern TRL uses for its own adaptive-entropy state).
- **Logs.** Per generation, through the trainer's own `log` (so TensorBoard, W&B, trackio, ...):
  `rollwise/effective_ratio`, `rollwise/zero_var_ratio`, `rollwise/acc_mean`, `rollwise/pred_spearman`,
  `rollwise/pred_mae`, `rollwise/selected_predicted`, `rollwise/selected_distinct` (docs/metrics.md
  names). Every selection (ids, predictions, successes, trials) is appended to
  `<output_dir>/rollwise_selections.jsonl` by the main process, and every observation to
  `<output_dir>/outcomes.jsonl` (rollwise's outcome log, with `features.npz` beside it), which
  `rollwise replay <output_dir>` reads as it reads a `rollwise train` run.

Not possible here: GVM's per-prompt sample counts (TRL reshapes rewards into groups of a fixed
`num_generations`), DAPO-style dynamic sampling (it would regenerate inside TRL's step) and the
offline filter by name (build `OfflineFilterSelector`, `fit` it, pass the object). Iterable datasets
cannot be selected from (no random access).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from rollwise.integrations.outcome_files import column, open_outcome_log, rows_pool
from rollwise.integrations.rewards import VerifierReward, message_text, reward_function
from rollwise.integrations.selection import (LateSelection, build_named_selector, group_counts, load_state,
                                             save_state)
from rollwise.track import MetricsLog

__all__ = ["SelectionMixin", "with_selection", "reward_function", "prior_beliefs", "STATE_FILE", "LOG_FILE"]

log = logging.getLogger(__name__)

STATE_FILE = "rollwise_selection.npz"
LOG_FILE = "rollwise_selections.jsonl"
SEED_SALT = 0x5E1EC7  # the selection stream is independent of TRL's own use of args.seed


class SelectionMixin:
    """Late-bound prompt selection for TRL's GRPOTrainer (or RLOOTrainer): put it first in the bases.

    Extra keyword arguments of the trainer:
    selector: a rollwise selector object built for `len(train_dataset)` prompts, or a name
        (`mopps`, `mopps-threshold`, `uniform`) built with rollwise's defaults. Default `mopps`.
    success_reward: name of the reward function whose value decides success (TRL's name: the
        function's `__name__`). Default: the one rollwise `reward_function`, or the only one.
    success_threshold: a completion with that reward >= this (minus 1e-9) is a success. Default 1.0.
    """

    def __init__(self, *args, selector="mopps", success_reward: str | None = None,
                 success_threshold: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        dataset = self.train_dataset
        if dataset is None or not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError("prompt selection needs a map-style train_dataset (random access by row); "
                            f"got {type(dataset).__name__}. Materialise an iterable dataset first")
        size = len(dataset)
        if isinstance(selector, str):
            selector = build_named_selector(selector, size)
        self.selection = LateSelection(selector, seed=[self.args.seed, SEED_SALT], pool_size=size)
        self._rollwise_prompts = self.args.generation_batch_size // self.num_generations
        if self._rollwise_prompts > size:
            raise ValueError(f"a generation batch holds {self._rollwise_prompts} distinct prompts "
                             f"(generation_batch_size / num_generations) but train_dataset has {size} rows")
        self._rollwise_success = self._success_column(success_reward)
        self._rollwise_threshold = float(success_threshold) - 1e-9
        self._rollwise_rows = None
        self._rollwise_log = (MetricsLog(Path(self.args.output_dir) / LOG_FILE)
                              if self.accelerator.is_main_process else None)
        if self.accelerator.is_main_process:
            self.selection.outcome_log = open_outcome_log(self.args.output_dir, self._rows_pool())

    def _rows_pool(self):
        """train_dataset as a rollwise pool (prompt, answer and metadata columns), for the outcome log's features."""
        ours = [f for f in self.reward_funcs if isinstance(f, VerifierReward)]
        answers = column(self.train_dataset, ours[0].answer_column if ours else "answer")
        return rows_pool([message_text(p, "user") for p in column(self.train_dataset, "prompt")], answers,
                         column(self.train_dataset, "metadata"), ours[0].task if ours else "file")

    def _success_column(self, name: str | None) -> int:
        names = list(self.reward_func_names)
        if name is not None:
            if name not in names:
                raise ValueError(f"success_reward={name!r} is not a reward function of this trainer: {names}")
            return names.index(name)
        ours = [i for i, f in enumerate(self.reward_funcs) if isinstance(f, VerifierReward)]
        if len(ours) == 1:
            return ours[0]
        if len(names) == 1:
            return 0
        raise ValueError(f"the trainer has several reward functions {names}: pass success_reward=NAME to say "
                         "which one decides a success for the selector")

    # ------------------------------------------------------------------ choose late, observe at once
    def _generate_and_score_completions(self, inputs):
        if self.model.training:
            inputs = self._selected_inputs(len(inputs))
        return super()._generate_and_score_completions(inputs)

    def _selected_inputs(self, local_rows: int) -> list[dict]:
        """This process's rows of a freshly chosen generation batch, laid out as TRL's RepeatSampler does."""
        processes, group = self.accelerator.num_processes, self.num_generations
        if local_rows * processes != self._rollwise_prompts * group:
            raise RuntimeError(f"the dataloader delivered {local_rows} rows on each of {processes} processes, but a "
                               f"generation batch is {self._rollwise_prompts} prompts x {group} generations")
        ids = self.selection.choose(self._rollwise_prompts)
        self._check_same_choice(ids)
        start = self.accelerator.process_index * local_rows
        mine = np.repeat(ids, group)[start:start + local_rows]
        rows = self._row_source()
        return [dict(rows[int(i)]) for i in mine]

    def _row_source(self):
        """train_dataset with the columns TRL's dataloader would have removed, removed (once)."""
        if self._rollwise_rows is None:
            try:
                import datasets

                is_hf = isinstance(self.train_dataset, datasets.Dataset)
            except ImportError:
                is_hf = False
            self._rollwise_rows = (self._remove_unused_columns(self.train_dataset, description="training")
                                   if is_hf else self.train_dataset)
        return self._rollwise_rows

    def _check_same_choice(self, ids: np.ndarray) -> None:
        if self.accelerator.num_processes == 1:
            return
        import torch

        everyone = self.accelerator.gather(torch.as_tensor(ids, device=self.accelerator.device).unsqueeze(0))
        if not bool((everyone == everyone[0]).all()):
            raise RuntimeError("processes chose different prompts for one generation: every process must build the "
                               "trainer with the same selector, args.seed and checkpoint")

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training and self.selection.pending is not None:
            self._observe(rewards)
        return rewards

    def _observe(self, rewards) -> None:
        """Count successes per chosen prompt in the gathered rewards (global batch, prompt-major)."""
        values = rewards[:, self._rollwise_success].detach().float().cpu().numpy()
        successes, trials = group_counts(values, self._rollwise_prompts, self.num_generations,
                                         self._rollwise_threshold)
        metrics = self.selection.observe(successes, trials)
        for name, value in metrics.items():
            self._metrics["train"][f"rollwise/{name}"].append(float(value))
        if self._rollwise_log is not None:
            self._rollwise_log.write({"step": self.state.global_step + 1, **self.selection.records[-1]})

    # ------------------------------------------------------------------ checkpoints
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if not resume_from_checkpoint and self._rollwise_log is not None:
            self._rollwise_log.truncate_to(0)  # a fresh run starts a fresh selection log
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            offset = self._rollwise_log.offset() if self._rollwise_log is not None else 0
            save_state({"selection": self.selection.state_dict(), "log_offset": offset}, folder / STATE_FILE)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = Path(checkpoint) / STATE_FILE
        if not path.is_file():
            log.warning("%s has no %s (written without rollwise selection): the selector starts from its prior",
                        checkpoint, STATE_FILE)
            return
        state = load_state(path)
        self.selection.load_state_dict(state["selection"])
        if self._rollwise_log is not None:
            if self._rollwise_log.offset() >= state["log_offset"]:
                self._rollwise_log.truncate_to(state["log_offset"])  # rows after the checkpoint come again
            else:
                log.warning("%s is shorter than at the checkpoint; appending to it", self._rollwise_log.path)


def prior_beliefs(prior: str | Path, pool, weight: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-row Beta (a0, b0) to start MoPPS informed: `MoPPSSelector(len(pool), prior_a=a0, prior_b=b0)`.

    prior: the output directory (its latest checkpoint) or a checkpoint of an earlier TRL run with this
    plug-in on the same dataset (its posteriors, row by row), or anything `rollwise train --prior` takes:
    a rollwise run directory or its selector.npz (a MoPPS run's posteriors; an offline run's pass rates of
    the initial policy, `rollwise train --selector offline --steps 0`, weighted a = w s + 1, b = w f + 1),
    a JSON/JSONL file of id -> rate or counts, or `metadata` (rollwise.select.priors).
    pool: the rollwise PromptPool whose item i is dataset row i (ids and content hashes are checked);
    for a TRL checkpoint, anything with the dataset's length.
    """
    state_file = _selection_state_file(Path(prior))
    if state_file is not None:
        selector = load_state(state_file)["selection"]["selector"]
        if "a" not in selector or len(selector["a"]) != len(pool):
            raise ValueError(f"{state_file}: not MoPPS posteriors for {len(pool)} rows (a different dataset or selector)")
        return np.asarray(selector["a"], dtype=np.float64), np.asarray(selector["b"], dtype=np.float64)
    from rollwise.select.priors import build_prior

    found = build_prior(str(prior), pool, weight)
    if found is None:
        raise ValueError("prior 'none' gives no beliefs: build MoPPSSelector without prior_a / prior_b")
    return found


def _selection_state_file(path: Path) -> Path | None:
    """A TRL run's selection state: the file, a checkpoint holding it, or the output dir's latest checkpoint."""
    if path.name == STATE_FILE and path.is_file():
        return path
    if (path / STATE_FILE).is_file():
        return path / STATE_FILE
    found = sorted(path.glob(f"checkpoint-*/{STATE_FILE}"), key=lambda p: int(p.parent.name.rsplit("-", 1)[-1]))
    return found[-1] if path.is_dir() and found and not (path / "selector.npz").is_file() else None


@functools.lru_cache(maxsize=None)
def with_selection(trainer_cls=None):
    """`trainer_cls` (default trl.GRPOTrainer) with `SelectionMixin` in front: same arguments plus
    `selector`, `success_reward`, `success_threshold`."""
    if trainer_cls is None:
        from trl import GRPOTrainer as trainer_cls
    return type(f"Selecting{trainer_cls.__name__}", (SelectionMixin, trainer_cls),
                {"__doc__": f"{trainer_cls.__name__} with rollwise's late prompt selection (SelectionMixin)."})
