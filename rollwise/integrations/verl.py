"""MoPPS selection and GVM sample budgets inside verl's v1 trainer (0.9.x), through its extension points.

Three objects, each loaded by verl from its configuration (examples/verl/ has a complete one;
docs/verl.md explains every setting):

    data.custom_cls:                        {path: pkg://rollwise.integrations.verl, name: SelectingDataset}
    trainer.v1.sampler.custom_sampler:      {path: pkg://rollwise.integrations.verl, name: SelectingReplayBuffer}
    reward.custom_reward_function:          {path: pkg://rollwise.integrations.verl, name: compute_score}

- `SelectingDataset` (a verl `RLHFDataset`) ignores the row index verl's sampler asks for and returns
  the prompt rollwise's selector chooses now (`GroupSelection.take`), with `__rollout_n__`, its
  sample count (verl's agent loop reads it per prompt: the GVM budget; `rollout.n` with the fixed
  allocator), and `rollwise_id`, its row. Its `state_dict` is the selection state, which verl's
  checkpoint saves with the dataloader (`data.pt`) and restores on resume.
- `SelectingReplayBuffer` (a verl `ReplayBuffer`) is verl's own sampler (DAPO's group filter
  included, from `sampler_kwargs`) that also reads the outcome of every finished group from
  TransferQueue (`rollwise_id` and the reward's `acc`) and hands it to the selector: the groups of
  the batch it returns, and the groups DAPO's filter evicts or discards, before they are cleared.
  Its metrics (`rollwise/...`) reach verl's logger with the step's.
- `compute_score` routes verl's reward calls to rollwise's guarded verifiers and returns `score` and
  `acc` (what DAPO's filter and the selector read).

The dataset and the replay buffer meet through this module's `active_selection()`: both live in
verl's trainer process, and verl imports `pkg://` paths as ordinary modules, so they share it
(a plain file path would load a second copy of the module; the dataset refuses to start then).
"""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import transfer_queue as tq
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync
from verl.utils.dataset.rl_dataset import RLHFDataset

from rollwise.integrations.group_selection import GroupSelection
from rollwise.integrations.outcome_files import column, open_outcome_log, rows_pool
from rollwise.integrations.rewards import REWARDS, VerifierReward, message_text, metadata_dict
from rollwise.integrations.selection import build_named_selector

__all__ = ["SelectingDataset", "SelectingReplayBuffer", "SelectingReplayBufferAsync", "compute_score",
           "active_selection", "SEED_SALT"]

log = logging.getLogger(__name__)

SEED_SALT = 0x5E1EC7  # the selection stream is independent of verl's own use of data.seed
ID_FIELD = "rollwise_id"
_ACTIVE: dict[str, GroupSelection] = {}


def active_selection() -> GroupSelection:
    """The selection the training `SelectingDataset` built (the replay buffer observes into it)."""
    if "train" not in _ACTIVE:
        raise RuntimeError("rollwise's replay buffer found no selection: set data.custom_cls to "
                           "{path: pkg://rollwise.integrations.verl, name: SelectingDataset} (docs/verl.md)")
    return _ACTIVE["train"]


# ---------------------------------------------------------------------------- dataset


def _file_list(files) -> list[str]:
    if files is None:
        return []
    return [str(f) for f in ([files] if isinstance(files, str) else list(files))]


class SelectingDataset(RLHFDataset):
    """verl's RLHFDataset whose training rows are chosen by a rollwise selector at fetch time.

    Settings under `data.rollwise` (docs/verl.md): selector (`mopps`, `mopps-threshold`, `uniform`),
    seed, samples_per_prompt (the mean n; interpolate `${actor_rollout_ref.rollout.n}`), allocator
    (`fixed` or `gvm`), gvm_min_samples (default 1: verl gives every dispatched prompt a batch slot),
    gvm_max_samples (0: no cap), gvm_alpha. The validation set (data.val_files) is read as verl reads it.
    """

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1) -> None:
        super().__init__(data_files, tokenizer, config, processor=processor, max_samples=max_samples)
        self.selection: GroupSelection | None = None
        if _file_list(data_files) != _file_list(config.get("train_files")):
            return  # the validation set: verl's own order, never selected
        if _file_list(config.get("train_files")) == _file_list(config.get("val_files")):
            raise ValueError("data.train_files and data.val_files name the same files: rollwise's SelectingDataset "
                             "tells the training set by its files; give validation its own file")
        workers = int(config.get("dataloader_num_workers", 0) or 0)
        if workers != 0:
            raise ValueError(f"data.dataloader_num_workers={workers}: selection runs in the dataset, and worker "
                             "copies of it never see the outcomes; set data.dataloader_num_workers=0")
        settings = dict(config.get("rollwise") or {})
        self.prompts_per_step = int(config.get("train_batch_size"))
        self.selection = build_selection(settings, len(self), seed_default=config.get("seed"))
        if settings.get("outcome_dir"):
            self.selection.outcome_log = open_outcome_log(settings["outcome_dir"], self._rows_pool())
        else:
            log.warning("data.rollwise.outcome_dir is not set: no outcome log for `rollwise replay` is written")
        _ACTIVE["train"] = self.selection

    def _rows_pool(self):
        """The training rows as a rollwise pool: the user's message, the ground truth, extra_info's metadata."""
        rows = self.dataframe
        rewards, extras = column(rows, "reward_model"), column(rows, "extra_info")
        sources = [s for s in column(rows, "data_source") if s]
        return rows_pool([message_text(p, "user") for p in column(rows, self.prompt_key)],
                         [r.get("ground_truth") if isinstance(r, dict) else None for r in rewards],
                         [e.get("metadata") if isinstance(e, dict) else None for e in extras],
                         str(sources[0]) if sources else "file")

    def __getitem__(self, item):
        if self.selection is None:
            return super().__getitem__(item)
        pid, n = self.selection.take(self.prompts_per_step)
        row = super().__getitem__(pid)
        row[ID_FIELD] = pid
        row["__rollout_n__"] = n
        return row

    # torchdata's StatefulDataLoader saves these with verl's checkpoint (data.pt) and restores them on resume.
    def state_dict(self) -> dict:
        return {} if self.selection is None else {"rollwise_selection": self.selection.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.selection is not None and state and "rollwise_selection" in state:
            self.selection.load_state_dict(state["rollwise_selection"])
        elif self.selection is not None:
            log.warning("verl checkpoint has no rollwise selection state: the selector starts from its prior")


SETTINGS = ("selector", "seed", "samples_per_prompt", "allocator", "gvm_min_samples", "gvm_max_samples", "gvm_alpha",
            "outcome_dir")


def build_selection(settings: dict, pool_size: int, seed_default=None) -> GroupSelection:
    """A GroupSelection from `data.rollwise` settings (validated here, with the setting's name in every message)."""
    from rollwise.allocate import build_allocator
    from rollwise.config import RunConfig

    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"data.rollwise: unknown settings {unknown}; expected some of {list(SETTINGS)}")
    if settings.get("samples_per_prompt") is None:
        raise ValueError("data.rollwise.samples_per_prompt is required (the mean samples per prompt); "
                         "set it to ${actor_rollout_ref.rollout.n}")
    n = int(settings["samples_per_prompt"])
    if n < 1:
        raise ValueError(f"data.rollwise.samples_per_prompt must be at least 1, got {n}")
    name = str(settings.get("selector", "mopps"))
    selector = build_named_selector(name, pool_size)
    allocator_name = str(settings.get("allocator", "fixed"))
    cfg = RunConfig(selector=name, samples_per_prompt=n, allocator=allocator_name, gvm_p_source="posterior",
                    gvm_min_samples=int(settings.get("gvm_min_samples", 1)),
                    gvm_max_samples=int(settings.get("gvm_max_samples", 0)),
                    gvm_alpha=float(settings.get("gvm_alpha", 1e-3)))
    allocator = build_allocator(cfg, pool_size, getattr(selector, "predictor", None))  # gvm: p from the posterior
    seed = settings.get("seed", seed_default)
    seed = 0 if seed is None else int(seed)
    return GroupSelection(selector, [SEED_SALT, seed], samples_per_prompt=n, allocator=allocator, pool_size=pool_size)


# ---------------------------------------------------------------------------- replay buffer


def _values(column) -> list:
    """Python values of one TransferQueue column (a tensor or a stack of non-tensor data)."""
    if hasattr(column, "tolist"):
        values = column.tolist()
    else:
        values = list(column)
    return [getattr(v, "data", v) for v in values]


class _ObservesOutcomes:
    """Reads finished groups' outcomes from TransferQueue and feeds them to the active selection.

    sampler_kwargs (verl passes `trainer.v1.sampler.sampler_kwargs`): filter_groups (DAPO's settings,
    `${algorithm.filter_groups}`), train_batch_size (`${data.train_batch_size}`), gen_batch_size,
    sync_refill_failed_groups, success_metric (default `acc`), success_threshold (default 1.0).
    """

    def __init__(self, trainer_mode, trainer_config, max_off_policy_threshold, max_off_policy_strategy,
                 sampler_kwargs, refill_fn=None, poll_interval: float = 2.0) -> None:
        options = dict(sampler_kwargs or {})
        known = {"filter_groups", "train_batch_size", "gen_batch_size", "sync_refill_failed_groups",
                 "success_metric", "success_threshold"}
        if set(options) - known:
            raise ValueError(f"trainer.v1.sampler.sampler_kwargs: unknown settings {sorted(set(options) - known)}; "
                             f"expected some of {sorted(known)}")
        filter_groups = dict(options.get("filter_groups") or {})
        dapo = bool(filter_groups.get("enable", False))
        refill_failed = bool(options.get("sync_refill_failed_groups", False))
        train_batch_size = options.get("train_batch_size")
        if dapo and train_batch_size is None:
            raise ValueError("DAPO's group filter needs sampler_kwargs.train_batch_size: ${data.train_batch_size}")
        exact = dapo or refill_failed  # verl's dataloader then fetches one prompt at a time
        super().__init__(trainer_mode=trainer_mode, trainer_config=trainer_config,
                         max_off_policy_threshold=max_off_policy_threshold,
                         max_off_policy_strategy=max_off_policy_strategy, sampler_kwargs=sampler_kwargs,
                         poll_interval=poll_interval, refill_fn=refill_fn,
                         filter_groups_metric=str(filter_groups.get("metric", "reward")) if dapo else None,
                         **self._sync_kwargs(options, train_batch_size, exact, filter_groups, refill_failed))
        self.success_metric = str(options.get("success_metric", "acc"))
        self.success_threshold = float(options.get("success_threshold", 1.0))
        self._filtered_observed = 0

    def _sync_kwargs(self, options, train_batch_size, exact, filter_groups, refill_failed) -> dict:
        return {}

    def outcomes(self, partition_id: str, keys: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row ids, successes, trials), one entry per group, of trajectories `keys` ({uid}_{session}_{i})."""
        if not keys:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=[ID_FIELD, "extra_fields"])
        rows = _values(data[ID_FIELD])
        extras = _values(data["extra_fields"])
        groups: dict[str, list] = {}
        for key, row, extra in zip(keys, rows, extras, strict=True):
            info = extra.get("reward_extra_info", {}) if isinstance(extra, dict) else {}
            if self.success_metric not in info:
                raise RuntimeError(f"trajectory {key} has no reward metric {self.success_metric!r} at sampling time: "
                                   "use a rule-based reward that returns it (rollwise's compute_score returns acc), "
                                   "or set sampler_kwargs.success_metric")
            uid = key.split("_")[0]
            entry = groups.setdefault(uid, [int(row), 0.0, 0.0])
            entry[1] += float(float(info[self.success_metric]) >= self.success_threshold - 1e-9)
            entry[2] += 1.0
        table = np.array(list(groups.values()), dtype=np.float64).reshape(-1, 3)
        return table[:, 0].astype(np.int64), table[:, 1], table[:, 2]

    def _observe(self, partition_id: str, keys: list[str]) -> dict:
        ids, successes, trials = self.outcomes(partition_id, keys)
        return active_selection().observe_groups(ids, successes, trials) if ids.size else {}

    def _clear_groups(self, partition_id: str, uids: set[str]) -> None:
        # DAPO's evicted groups and discarded surplus are outcomes too: observe them before verl clears them.
        if partition_id == "train" and uids:
            finished = uids & (self.finished_keys[partition_id] | self.failure_keys[partition_id])
            keys = [k for k in self.partitions[partition_id] if k.split("_")[0] in finished]
            if keys:
                self._observe(partition_id, keys)
                self._filtered_observed += len(finished)
        super()._clear_groups(partition_id, uids)

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        self._filtered_observed = 0
        batch, metrics = super().sample(global_steps, partition_id, batch_size)
        if partition_id == "train":
            keys = [k for k, tag in zip(batch.keys, batch.tags) if not tag.get("is_padding", False)]
            row = self._observe(partition_id, keys)
            metrics.update({f"rollwise/{k}": v for k, v in row.items()})
            metrics["rollwise/filtered_groups_observed"] = self._filtered_observed
        return batch, metrics


class SelectingReplayBuffer(_ObservesOutcomes, ReplayBuffer):
    """verl's synchronous replay buffer (trainer.v1.trainer_mode=sync) that feeds outcomes to the selector."""

    def _sync_kwargs(self, options, train_batch_size, exact, filter_groups, refill_failed) -> dict:
        gen_batch_size = 1 if exact else (options.get("gen_batch_size") or train_batch_size)
        return {"train_batch_size": train_batch_size, "gen_batch_size": gen_batch_size,
                "max_inflight_gen_batches": int(filter_groups.get("max_inflight_gen_batches", 1) or 1),
                "sync_refill_failed_groups": refill_failed}


class SelectingReplayBufferAsync(_ObservesOutcomes, ReplayBufferAsync):
    """verl's asynchronous replay buffer (colocate_async, separate_async) that feeds outcomes to the selector.

    Asynchronous modes choose prompts while older ones are still generating, so a choice sees the
    outcomes finished by then, not all earlier ones (docs/verl.md).
    """


# ---------------------------------------------------------------------------- reward

_GUARDS: dict[tuple, tuple[VerifierReward, threading.Lock]] = {}
_GUARDS_LOCK = threading.Lock()


def _reward_for(task: str, verifier: str, options: dict | None, **guard) -> tuple[VerifierReward, threading.Lock]:
    key = (task, verifier, json.dumps(options or {}, sort_keys=True), tuple(sorted(guard.items())))
    with _GUARDS_LOCK:
        if key not in _GUARDS:
            _GUARDS[key] = (VerifierReward(task, verifier, "score", options, **guard), threading.Lock())
        return _GUARDS[key]


def compute_score(data_source, solution_str, ground_truth, extra_info=None, task: str | None = None,
                  verifier: str = "auto", reward: str = "acc", options: dict | None = None,
                  fallback_last_number: bool = True, workers: int = 2, timeout: float = 5.0,
                  memory_mb: int = 1024, **unused) -> dict:
    """verl's reward-function signature, scored by rollwise's guarded verifier; returns score and acc.

    task: the reasoning-gym task (or "file" with verifier "math"/"exact"); default the row's
    data_source. reward: "acc" (score 1.0 / 0.0) or "score" (the verifier's shaped score in [0, 1]);
    acc is always 1.0 for a verified-correct answer. Set these in `reward.custom_reward_function.reward_kwargs`.
    The completion is untrusted: rollwise's own eval-free scorers run in this process, all others in
    sandboxed workers with time limits (docs/sandbox.md).
    """
    if reward not in REWARDS:
        raise ValueError(f"reward={reward!r}: expected one of {', '.join(REWARDS)}")
    extra_info = extra_info if isinstance(extra_info, dict) else {}
    scorer, lock = _reward_for(task or str(data_source), verifier, options, workers=workers, timeout=timeout,
                               memory_mb=memory_mb, fallback_last_number=fallback_last_number)
    with lock:  # verl scores in a thread pool; one guard serves one caller at a time
        result = scorer.score_one(solution_str, ground_truth, extra_info.get("index", -1),
                                  str(extra_info.get("question", "")), metadata_dict(extra_info.get("metadata")))
    acc = 1.0 if result.acc else 0.0
    return {"score": float(result.reward) if reward == "score" else acc, "acc": acc}
