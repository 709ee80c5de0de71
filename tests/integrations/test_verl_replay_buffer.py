"""rollwise's replay buffer inside verl 0.9's v1 trainer, on a local Ray with TransferQueue: it reads
the outcomes verl's agent loop writes and feeds them to the selector, with and without DAPO's filter."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

pytest.importorskip("verl")
pytest.importorskip("transfer_queue")

import torch  # noqa: E402

from rollwise.integrations import verl as plugin  # noqa: E402
from tests.support.verl import BATCH, N, compose, solved, verl_dataloader  # noqa: E402

pytestmark = pytest.mark.slow  # a local Ray cluster with TransferQueue (about 25 s to start)

@pytest.fixture(scope="module")
def transfer_queue():
    """A local Ray with TransferQueue's controller and storage (about 25 s to start on two cores)."""
    import ray
    import transfer_queue as tq

    # logical CPUs: TransferQueue's controller and storage actors reserve one each
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    tq.init()
    yield tq
    tq.close()
    ray.shutdown()


def dispatch(tq, batch, step, n_of=None):
    """What verl's trainer and agent loop write to TransferQueue for one batch of dataset rows.

    Per prompt a group `{uid}` tagged finished, and per session a trajectory `{uid}_{session}_0`
    whose fields carry the dataset row's keys (`rollwise_id`, ...) and the reward's extra info
    (`acc`), as `AgentLoopWorkerTQ._agent_loop_postprocess` stores them.
    """
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    uids = []
    for pid, n in zip(batch[plugin.ID_FIELD], batch["__rollout_n__"]):
        pid, n = int(pid), int(n if n_of is None else n_of(int(pid)))
        uid = uuid.uuid4().hex
        tq.kv_put(key=uid, partition_id="train", tag={"is_prompt": True, "status": "finished", "global_steps": step})
        keys = [f"{uid}_{s}_0" for s in range(n)]
        fields = [{plugin.ID_FIELD: pid, "input_ids": torch.tensor([1, 2, 3]),
                   "extra_fields": {"reward_extra_info": {"acc": solved(pid, s), "score": solved(pid, s)}}}
                  for s in range(n)]
        tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields),
                        tags=[{"status": "success", "global_steps": step}] * n)
        uids.append(uid)
    return uids


def replay_buffer(cfg, refill_fn=None):
    from verl.utils.import_utils import load_extern_type

    sampler = cfg.trainer.v1.sampler
    cls = load_extern_type(sampler.custom_sampler.path, sampler.custom_sampler.name)
    # the constructor call of verl's PPOTrainer._build_replay_buffer for a custom sampler
    return cls(trainer_mode=cfg.trainer.v1.trainer_mode, trainer_config=cfg.trainer.v1.get("sync", {}),
               max_off_policy_threshold=sampler.max_off_policy_threshold,
               max_off_policy_strategy=sampler.max_off_policy_strategy, sampler_kwargs=sampler.sampler_kwargs,
               refill_fn=refill_fn)


def test_replay_buffer_feeds_the_sampled_groups_outcomes_to_the_selector(transfer_queue, data_dir):
    tq = transfer_queue
    cfg = compose(data_dir)
    dataset, loader = verl_dataloader(cfg)
    buffer = replay_buffer(cfg)
    buffer.poll_interval = 0.05
    it = iter(loader)
    for step in range(1, 4):
        batch = next(it)
        ids = [int(i) for i in batch[plugin.ID_FIELD]]
        a_before = dataset.selection.selector.predictor.a.copy()
        dispatch(tq, batch, step)
        meta, metrics = buffer.sample(global_steps=step, partition_id="train", batch_size=BATCH)
        assert len(meta.keys) == BATCH * N
        successes = np.array([sum(solved(i, k) for k in range(N)) for i in ids])
        np.testing.assert_allclose(dataset.selection.selector.predictor.a[ids], 0.5 * a_before[ids] + 0.5 + successes)
        assert metrics["rollwise/acc_mean"] == pytest.approx(successes.sum() / (BATCH * N))
        assert 0.0 <= metrics["rollwise/effective_ratio"] <= 1.0
        assert metrics["rollwise/filtered_groups_observed"] == 0
        tq.kv_clear(keys=meta.keys, partition_id="train")
    assert dataset.selection.generation == 3


def test_dapo_filter_is_honoured_and_filtered_groups_are_observed(transfer_queue, data_dir):
    tq = transfer_queue
    cfg = compose(data_dir, "algorithm.filter_groups.enable=true")
    dataset, loader = verl_dataloader(cfg)
    refills = []
    it = iter(loader)

    def refill(count):  # verl's _add_prompts_to_generate: fetch `count` more rows and dispatch them
        refills.append(count)
        for _ in range(count):
            dispatch(tq, next(it), 1, n_of=lambda pid: N)

    buffer = replay_buffer(cfg, refill_fn=refill)
    buffer.poll_interval = 0.05
    assert buffer.filter_groups_metric == "acc" and buffer.gen_batch_size == 1
    batch = next(it)
    dispatch(tq, batch, 1)
    records_before = len(dataset.selection.records)
    meta, metrics = buffer.sample(global_steps=1, partition_id="train", batch_size=BATCH)
    # every sampled group has mixed outcomes (DAPO), the all-right / all-wrong ones were observed first
    uids = {k.split("_")[0] for k in meta.keys}
    assert len(uids) == BATCH
    rows = tq.kv_batch_get(keys=meta.keys, partition_id="train", select_fields=[plugin.ID_FIELD])
    sampled = {int(r) for r in plugin._values(rows[plugin.ID_FIELD])}
    assert all(pid % 3 != 0 and pid % 2 == 0 for pid in sampled)
    assert refills and metrics["rollwise/filtered_groups_observed"] > 0
    trials = sum(sum(r["trials"]) for r in dataset.selection.records[records_before:])
    assert trials == N * (BATCH + metrics["rollwise/filtered_groups_observed"])  # every finished group, once
    tq.kv_clear(keys=meta.keys, partition_id="train")


def test_async_replay_buffer_observes_the_same_way(transfer_queue, data_dir):
    tq = transfer_queue
    cfg = compose(data_dir, "trainer.v1.trainer_mode=colocate_async",
                  "trainer.v1.sampler.custom_sampler.name=SelectingReplayBufferAsync")
    dataset, loader = verl_dataloader(cfg)
    buffer = replay_buffer(cfg, refill_fn=lambda count: None)
    assert isinstance(buffer, plugin.SelectingReplayBufferAsync)
    buffer.poll_interval = 0.05
    batch = next(iter(loader))
    ids = [int(i) for i in batch[plugin.ID_FIELD]]
    dispatch(tq, batch, 1)
    meta, metrics = buffer.sample(global_steps=1, partition_id="train", batch_size=BATCH)
    successes = sum(sum(solved(i, k) for k in range(N)) for i in ids)
    assert metrics["rollwise/acc_mean"] == pytest.approx(successes / (BATCH * N))
    assert dataset.selection.seen[ids].all()
    tq.kv_clear(keys=meta.keys, partition_id="train")


def test_missing_reward_metric_is_a_clear_error(transfer_queue, data_dir):
    tq = transfer_queue
    cfg = compose(data_dir, "+trainer.v1.sampler.sampler_kwargs.success_metric=correct")
    _, loader = verl_dataloader(cfg)
    buffer = replay_buffer(cfg)
    buffer.poll_interval = 0.05
    dispatch(tq, next(iter(loader)), 1)
    with pytest.raises(RuntimeError, match="correct"):
        buffer.sample(global_steps=1, partition_id="train", batch_size=BATCH)
    tq.kv_clear(keys=list(tq.kv_list("train").get("train", {})), partition_id="train")
