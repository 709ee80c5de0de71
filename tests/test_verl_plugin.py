"""rollwise inside verl 0.9's v1 trainer, without a GPU: config composition, the reward adapter, the
selecting dataset through verl's own dataloader (with `__rollout_n__`), its checkpoint, and the
replay buffer reading real outcomes from TransferQueue on a local Ray.

What needs a GPU (verl's trainer `fit()`: vLLM/SGLang rollout servers, FSDP workers) is the last
test, skipped without CUDA.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("verl")
pytest.importorskip("transfer_queue")

import torch  # noqa: E402

from rollwise.integrations import verl as plugin  # noqa: E402
from rollwise.integrations.verl_data import verl_rows, write_parquet  # noqa: E402
from rollwise.pool import PoolItem, PromptPool  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "verl"
POOL = 24
BATCH = 4
N = 4


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A pool of sums 'i + 1' (rows in id order) and a held-out file, in verl's layout."""
    root = tmp_path_factory.mktemp("verl-data")
    train = PromptPool([PoolItem(i, f"{i} + 1 =", str(i + 1), {"i": i}) for i in range(POOL)], "basic_arithmetic", "t")
    held = PromptPool([PoolItem(i, f"{i} + 2 =", str(i + 2)) for i in range(4)], "basic_arithmetic", "v")
    write_parquet(verl_rows(train), root / "train.parquet")
    write_parquet(verl_rows(held), root / "val.parquet")
    return root


def compose(data_dir, *overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(EXAMPLE), version_base=None):
        return hydra_compose(config_name="rollwise_grpo", overrides=[
            f"data.train_files={data_dir / 'train.parquet'}", f"data.val_files={data_dir / 'val.parquet'}",
            f"data.train_batch_size={BATCH}", f"actor_rollout_ref.rollout.n={N}", "data.shuffle=false",
            f"+data.cache_dir={data_dir / 'cache'}", *overrides])


def tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<pad>": 0, "<eos>": 1, "<unk>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def verl_dataloader(cfg, train=True):
    """The dataset and dataloader exactly as verl's v1 trainer builds them (`PPOTrainer._init_dataloader`)."""
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler
    from verl.utils.dataset.rl_dataset import collate_fn

    files = cfg.data.train_files if train else cfg.data.val_files
    dataset = create_rl_dataset(files, cfg.data, tokenizer(), None, is_train=train)
    loader = StatefulDataLoader(dataset=dataset, batch_size=cfg.data.train_batch_size,
                                num_workers=cfg.data.dataloader_num_workers, drop_last=True, collate_fn=collate_fn,
                                sampler=create_rl_sampler(cfg.data, dataset))
    return dataset, loader


def batches(loader):
    """Batches forever, restarting the epoch the way verl's `_fetch_one_gen_batch` does."""
    while True:
        yield from loader


def solved(pid: int, session: int) -> float:
    """The outcome rule the tests feed back: multiples of 3 always right, others right on even sessions of even ids."""
    return 1.0 if pid % 3 == 0 or (pid % 2 == 0 and session % 2 == 0) else 0.0


# ---------------------------------------------------------------------------- config and reward


def test_example_config_composes_and_verl_loads_the_plugin(data_dir):
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.dataset.rl_dataset import get_dataset_class
    from verl.utils.import_utils import load_extern_type

    cfg = compose(data_dir)
    assert cfg.trainer.use_v1 and cfg.data.dataloader_num_workers == 0
    assert get_dataset_class(cfg.data) is plugin.SelectingDataset
    sampler = cfg.trainer.v1.sampler
    assert load_extern_type(sampler.custom_sampler.path, sampler.custom_sampler.name) is plugin.SelectingReplayBuffer
    assert sampler.sampler_kwargs.train_batch_size == BATCH  # interpolations resolve against verl's config
    assert sampler.sampler_kwargs.filter_groups.metric == "acc"
    assert cfg.data.rollwise.samples_per_prompt == N
    score = get_custom_reward_fn(cfg)
    assert score(data_source="basic_arithmetic", solution_str="so <answer>8</answer>", ground_truth="8",
                 extra_info={"index": 7}) == {"score": 1.0, "acc": 1.0}


def test_compute_score_routes_to_the_guarded_verifier():
    kwargs = {"data_source": "basic_arithmetic", "ground_truth": "12", "extra_info": {"index": 3}}
    assert plugin.compute_score(solution_str="<answer>12</answer>", **kwargs) == {"score": 1.0, "acc": 1.0}
    assert plugin.compute_score(solution_str="it is 12", **kwargs)["acc"] == 1.0  # last-number fallback
    assert plugin.compute_score(solution_str="it is 12", fallback_last_number=False, **kwargs)["acc"] == 0.0
    assert plugin.compute_score(solution_str="<answer>13</answer>", **kwargs) == {"score": 0.0, "acc": 0.0}
    assert plugin.compute_score(solution_str="<answer>" + "9" * 10_000 + "</answer>", **kwargs)["acc"] == 0.0
    # a scorer that reads the entry's metadata gets it from extra_info (JSON, as verl_data writes it)
    meta = {"target": 10, "numbers": [2, 5]}
    item = {"data_source": "countdown", "ground_truth": "2 * 5",
            "extra_info": {"index": 0, "question": "make 10", "metadata": '{"target": 10, "numbers": [2, 5]}'}}
    assert plugin.compute_score(solution_str="<answer>5 * 2</answer>", **item)["acc"] == 1.0
    assert plugin._metadata({"metadata": meta}) == meta
    with pytest.raises(ValueError, match="reward="):
        plugin.compute_score(solution_str="1", reward="other", **kwargs)


# ---------------------------------------------------------------------------- dataset


def test_training_rows_come_from_the_selector_with_their_sample_counts(data_dir):
    cfg = compose(data_dir)
    dataset, loader = verl_dataloader(cfg)
    batch = next(iter(loader))
    ids = list(batch[plugin.ID_FIELD])
    assert len(set(ids)) == BATCH and list(batch["__rollout_n__"]) == [N] * BATCH
    for pid, prompt in zip(ids, batch["raw_prompt"]):  # the row is the selected prompt's row
        assert prompt[0]["content"].startswith(f"{pid} + 1 =")
    assert list(batch["index"]) == ids  # verl_data writes extra_info.index = row
    assert plugin.active_selection() is dataset.selection
    val, val_loader = verl_dataloader(cfg, train=False)  # the validation set is verl's own
    assert val.selection is None and plugin.ID_FIELD not in next(iter(val_loader))


def test_outcomes_steer_later_choices_exactly_as_a_replay(data_dir):
    from rollwise.integrations.verl import build_selection

    cfg = compose(data_dir)
    dataset, loader = verl_dataloader(cfg)
    replay = build_selection(dict(cfg.data.rollwise), POOL)
    it = iter(loader)
    for _ in range(6):
        batch = next(it)
        ids = [int(i) for i in batch[plugin.ID_FIELD]]
        assert ids == [replay.take(BATCH)[0] for _ in range(BATCH)]  # chosen from posteriors with every outcome
        s = [sum(solved(i, k) for k in range(N)) for i in ids]
        dataset.selection.observe_groups(ids, s, [N] * BATCH)
        replay.observe_groups(ids, s, [N] * BATCH)
    np.testing.assert_allclose(dataset.selection.selector.a, replay.selector.a)
    assert dataset.selection.records[-1]["predicted"] is not None


def test_gvm_allocates_the_budget_by_the_posterior(data_dir):
    cfg = compose(data_dir, "data.rollwise.allocator=gvm")
    dataset, loader = verl_dataloader(cfg)
    it = batches(loader)
    counts = []
    for _ in range(8):
        batch = next(it)
        ids, ns = [int(i) for i in batch[plugin.ID_FIELD]], [int(n) for n in batch["__rollout_n__"]]
        assert sum(ns) == BATCH * N and min(ns) >= 1
        counts.append(ns)
        dataset.selection.observe_groups(ids, [sum(solved(i, k) for k in range(n)) for i, n in zip(ids, ns)], ns)
    assert any(len(set(ns)) > 1 for ns in counts)  # different sizes once the posteriors differ


def test_selection_state_rides_in_verls_dataloader_checkpoint(data_dir):
    cfg = compose(data_dir)

    def run(steps, loader, dataset, it=None):
        it = it or iter(loader)
        out = []
        for _ in range(steps):
            ids = [int(i) for i in next(it)[plugin.ID_FIELD]]
            dataset.selection.observe_groups(ids, [sum(solved(i, k) for k in range(N)) for i in ids], [N] * BATCH)
            out.append(ids)
        return out, it

    dataset, loader = verl_dataloader(cfg)
    straight, _ = run(5, loader, dataset)

    dataset, loader = verl_dataloader(cfg)
    first, it = run(2, loader, dataset)
    buffer = io.BytesIO()
    torch.save(loader.state_dict(), buffer)  # what verl's _save_checkpoint writes to data.pt
    dataset, loader = verl_dataloader(cfg)  # a fresh process would build these again
    loader.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
    rest, _ = run(3, loader, dataset)
    assert first + rest == straight


@pytest.mark.parametrize("override, message", [
    ("data.dataloader_num_workers=8", "dataloader_num_workers"),
    ("data.rollwise.samples_per_prompt=null", "samples_per_prompt"),
    ("data.rollwise.selector=offline", "offline"),
    ("+data.rollwise.decay=0.3", "unknown settings"),
])
def test_bad_settings_fail_at_construction(data_dir, override, message):
    with pytest.raises(ValueError, match=message):
        verl_dataloader(compose(data_dir, override))


def test_validation_on_the_training_file_is_refused(data_dir):
    cfg = compose(data_dir, f"data.val_files={data_dir / 'train.parquet'}")
    with pytest.raises(ValueError, match="same files"):
        verl_dataloader(cfg)


# ---------------------------------------------------------------------------- replay buffer


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
        a_before = dataset.selection.selector.a.copy()
        dispatch(tq, batch, step)
        meta, metrics = buffer.sample(global_steps=step, partition_id="train", batch_size=BATCH)
        assert len(meta.keys) == BATCH * N
        successes = np.array([sum(solved(i, k) for k in range(N)) for i in ids])
        np.testing.assert_allclose(dataset.selection.selector.a[ids], 0.5 * a_before[ids] + 0.5 + successes)
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


# ---------------------------------------------------------------------------- data and launch script


def test_verl_data_writes_a_task_in_verls_layout(tmp_path):
    import pyarrow.parquet as pq

    from rollwise.integrations.verl_data import main

    main(["--task", "basic_arithmetic", "--train-size", "6", "--eval-size", "2", "--out", str(tmp_path)])
    train = pq.read_table(tmp_path / "train.parquet").to_pylist()
    held = pq.read_table(tmp_path / "val.parquet").to_pylist()
    assert len(train) == 6 and len(held) == 2
    assert [row["extra_info"]["index"] for row in train] == list(range(6))
    assert not {r["extra_info"]["question"] for r in train} & {r["extra_info"]["question"] for r in held}
    row = train[0]
    assert row["data_source"] == "basic_arithmetic" and row["prompt"][0]["role"] == "user"
    assert row["prompt"][0]["content"].startswith(row["extra_info"]["question"])
    answer = row["reward_model"]["ground_truth"]
    assert plugin.compute_score(row["data_source"], f"<answer>{answer}</answer>", answer, row["extra_info"])["acc"] == 1.0


def test_launch_script_composes_a_valid_verl_config(data_dir, tmp_path):
    """examples/verl/run.sh with `python` standing in for verl's main_ppo: its overrides compose."""
    import json
    import subprocess
    import sys

    shim = tmp_path / "bin" / "python"
    shim.parent.mkdir()
    composer = tmp_path / "compose.py"
    composer.write_text(
        "import json, sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "args = sys.argv[1:]\n"
        "path = next(a.split('=', 1)[1] for a in args if a.startswith('--config-path='))\n"
        "name = next(a.split('=', 1)[1] for a in args if a.startswith('--config-name='))\n"
        "with initialize_config_dir(config_dir=path, version_base=None):\n"
        "    cfg = compose(config_name=name, overrides=[a for a in args if not a.startswith('--')])\n"
        "print(json.dumps({'nnodes': cfg.trainer.nnodes, 'gpus': cfg.trainer.n_gpus_per_node,\n"
        "                  'allocator': cfg.data.rollwise.allocator, 'train': cfg.data.train_files,\n"
        "                  'steps': cfg.trainer.total_training_steps}))\n")
    shim.write_text(f'#!/bin/sh\nif [ "$2" = verl.trainer.main_ppo ]; then shift 2; exec {sys.executable} {composer} "$@"; fi\n'
                    f'exec {sys.executable} "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}", "DATA": str(data_dir),
           "NNODES": "2", "GPUS_PER_NODE": "4", "ALLOCATOR": "gvm"}
    result = subprocess.run(["bash", str(EXAMPLE / "run.sh"), "trainer.total_training_steps=7"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    composed = json.loads(result.stdout.strip().splitlines()[-1])
    assert composed == {"nnodes": 2, "gpus": 4, "allocator": "gvm", "train": f"{data_dir}/train.parquet", "steps": 7}


# ---------------------------------------------------------------------------- GPU


@pytest.mark.skipif(not torch.cuda.is_available() or not os.environ.get("ROLLWISE_VERL_MODEL"),
                    reason="needs a GPU, vLLM and a local model directory in ROLLWISE_VERL_MODEL")
def test_verl_trains_two_steps_with_the_plugin_on_a_gpu(data_dir, tmp_path):
    """verl's real `fit()` for two steps with rollwise's dataset, replay buffer and reward (examples/verl/run.sh)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "verl.trainer.main_ppo", f"--config-path={EXAMPLE}", "--config-name=rollwise_grpo",
           f"data.train_files={data_dir / 'train.parquet'}", f"data.val_files={data_dir / 'val.parquet'}",
           f"actor_rollout_ref.model.path={os.environ['ROLLWISE_VERL_MODEL']}", "data.train_batch_size=4",
           "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
           "trainer.total_training_steps=2", "trainer.n_gpus_per_node=1", "trainer.nnodes=1",
           f"trainer.default_local_dir={tmp_path}", "trainer.save_freq=2", "trainer.test_freq=-1",
           "trainer.val_before_train=false", "data.max_response_length=64"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "rollwise/acc_mean" in result.stdout
    assert list(tmp_path.glob("global_step_2/data.pt"))
