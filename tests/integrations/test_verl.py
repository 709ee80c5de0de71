"""rollwise inside verl 0.9's v1 trainer, without a GPU: config composition, the reward adapter, the
selecting dataset through verl's own dataloader (with `__rollout_n__`), its checkpoint, the data
writer and the launch script. The replay buffer's tests are in test_verl_replay_buffer.py.

What needs a GPU (verl's trainer `fit()`: vLLM/SGLang rollout servers, FSDP workers) is the last
test, skipped without CUDA.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

pytest.importorskip("verl")
pytest.importorskip("transfer_queue")

import torch  # noqa: E402

from rollwise.integrations import verl as plugin  # noqa: E402
from rollwise.integrations.rewards import metadata_dict  # noqa: E402
from tests.support.verl import BATCH, EXAMPLE, N, POOL, batches, compose, solved, verl_dataloader  # noqa: E402

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
    assert metadata_dict(meta) == meta and metadata_dict(json.dumps(meta)) == meta and metadata_dict("[1") == {}
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
    np.testing.assert_allclose(dataset.selection.selector.predictor.a, replay.selector.predictor.a)
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


def test_selection_state_rides_in_verls_dataloader_checkpoint(data_dir, tmp_path):
    """The choices continue exactly, and the outcome log is cut back to the checkpoint and written again."""
    from rollwise.predict.outcomes import read_outcomes
    from rollwise.predict.replay import load_run

    def run(steps, loader, dataset, it=None):
        it = it or iter(loader)
        out = []
        for _ in range(steps):
            ids = [int(i) for i in next(it)[plugin.ID_FIELD]]
            dataset.selection.observe_groups(ids, [sum(solved(i, k) for k in range(N)) for i in ids], [N] * BATCH)
            out.append(ids)
        return out, it

    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    cfg = compose(data_dir, f"data.rollwise.outcome_dir={straight_dir}")
    dataset, loader = verl_dataloader(cfg)
    straight, _ = run(5, loader, dataset)

    cfg = compose(data_dir, f"data.rollwise.outcome_dir={resumed_dir}")
    dataset, loader = verl_dataloader(cfg)
    first, it = run(2, loader, dataset)
    buffer = io.BytesIO()
    torch.save(loader.state_dict(), buffer)  # what verl's _save_checkpoint writes to data.pt
    run(1, loader, dataset, it)  # a step after the checkpoint, then the process dies
    dataset, loader = verl_dataloader(cfg)  # a fresh process would build these again
    loader.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
    rest, _ = run(3, loader, dataset)
    assert first + rest == straight
    log = (resumed_dir / "outcomes.jsonl").read_text()
    assert log == (straight_dir / "outcomes.jsonl").read_text()
    rows = read_outcomes(resumed_dir / "outcomes.jsonl")
    assert [r.ids.tolist() for r in rows] == [sorted(ids) for ids in straight] and [r.step for r in rows] == [1, 2, 3, 4, 5]
    assert len(load_run(resumed_dir).features) == POOL  # rollwise replay reads it


def test_the_example_writes_the_outcome_log_beside_verls_checkpoints(data_dir):
    cfg = compose(data_dir)
    assert cfg.data.rollwise.outcome_dir == cfg.trainer.default_local_dir


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

# ---------------------------------------------------------------------------- data and launch script


def test_verl_data_defaults_to_rollwises_default_task(tmp_path):
    import pyarrow.parquet as pq

    from rollwise.config import RunConfig
    from rollwise.integrations.verl_data import main
    from rollwise.data.pool import build_pools

    main(["--train-size", "40", "--eval-size", "10", "--out", str(tmp_path)])
    rows = pq.read_table(tmp_path / "train.parquet").to_pylist()
    train, _ = build_pools(RunConfig(train_size=40, eval_size=10, batch_prompts=8))  # `rollwise train`'s pool
    assert [r["extra_info"]["question"] for r in rows] == [it.prompt for it in train]
    assert {json.loads(r["extra_info"]["metadata"])["num_terms"] for r in rows} <= {2, 3}
    main(["--options", "{}", "--train-size", "40", "--eval-size", "10", "--out", str(tmp_path / "rg")])
    rg = pq.read_table(tmp_path / "rg" / "train.parquet").to_pylist()  # reasoning-gym's own defaults: * and / too
    assert any(op in r["extra_info"]["question"] for r in rg for op in "*/")


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
           "NNODES": "2", "GPUS_PER_NODE": "4", "ALLOCATOR": "gvm", "SKIP_GPU_CHECK": "1"}
    result = subprocess.run(["bash", str(EXAMPLE / "run.sh"), "trainer.total_training_steps=7"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    composed = json.loads(result.stdout.strip().splitlines()[-1])
    assert composed == {"nnodes": 2, "gpus": 4, "allocator": "gvm", "train": f"{data_dir}/train.parquet", "steps": 7}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_launch_script_stops_at_once_without_a_gpu(tmp_path):
    """Without the check verl starts Ray and waits for GPUs forever; run.sh says why and exits first."""
    import subprocess
    import time

    start = time.monotonic()
    result = subprocess.run(["bash", str(EXAMPLE / "run.sh")], env={**os.environ, "DATA": str(tmp_path / "data")},
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and "no CUDA GPU" in result.stderr and "SKIP_GPU_CHECK" in result.stderr
    assert not (tmp_path / "data").exists() and time.monotonic() - start < 60


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A local model directory verl's HFModelConfig loads (config + tokenizer): the exported tiny model."""
    from rollwise.policy.export_command import export_model

    return export_model("tiny", tmp_path_factory.mktemp("verl-model") / "tiny", log=lambda m: None)


@pytest.mark.parametrize("overrides", [[], ["actor_rollout_ref.actor.use_kl_loss=true", "data.rollwise.allocator=gvm"]])
def test_example_config_builds_verls_own_config_classes(data_dir, model_dir, overrides):
    """verl's own validation and dataclasses (what main_ppo and its workers build) accept the example as run.sh
    launches it: the micro-batch sizes are set, the model is a setting, the algorithm is GRPO."""
    from omegaconf import open_dict
    from verl.trainer.config import AlgoConfig
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config
    from verl.workers.config import CheckpointEngineConfig, FSDPActorConfig, HFModelConfig, RolloutConfig

    with initialize_example():
        cfg = compose_example([f"actor_rollout_ref.model.path={model_dir}", "trainer.n_gpus_per_node=8",
                               f"data.train_files={data_dir / 'train.parquet'}", *overrides])
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    assert not need_critic(cfg) and need_reference_policy(cfg) == bool(overrides)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert isinstance(actor, FSDPActorConfig) and actor.ppo_micro_batch_size_per_gpu == 8
    rollout = omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    assert isinstance(rollout, RolloutConfig) and rollout.n == 8 and rollout.name == "vllm"
    model = omega_conf_to_dataclass(cfg.actor_rollout_ref.model)
    assert isinstance(model, HFModelConfig) and model.hf_config.vocab_size == 17
    algorithm = omega_conf_to_dataclass(cfg.algorithm)
    assert isinstance(algorithm, AlgoConfig) and algorithm.adv_estimator == "grpo"
    assert isinstance(omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout.checkpoint_engine), CheckpointEngineConfig)
    if need_reference_policy(cfg):  # the reference model's config, renamed as verl's worker does (engine_workers.py)
        with open_dict(cfg.actor_rollout_ref.ref):
            ref = cfg.actor_rollout_ref.ref
            ref.ppo_mini_batch_size = cfg.actor_rollout_ref.actor.ppo_mini_batch_size
            ref.ppo_micro_batch_size = ref.pop("log_prob_micro_batch_size", None)
            ref.ppo_micro_batch_size_per_gpu = ref.pop("log_prob_micro_batch_size_per_gpu", None)
            ref.use_dynamic_bsz = ref.pop("log_prob_use_dynamic_bsz", False)
            ref.ppo_max_token_len_per_gpu = ref.pop("log_prob_max_token_len_per_gpu", None)
        assert omega_conf_to_dataclass(ref).ppo_micro_batch_size_per_gpu == 16
    assert cfg.data.rollwise.allocator == ("gvm" if overrides else "fixed")


def initialize_example():
    from hydra import initialize_config_dir

    return initialize_config_dir(config_dir=str(EXAMPLE), version_base=None)


def compose_example(overrides):
    """The example as run.sh launches it on one node (its defaults), plus overrides."""
    from hydra import compose as hydra_compose

    return hydra_compose(config_name="rollwise_grpo", overrides=[
        "trainer.nnodes=1", "trainer.default_local_dir=checkpoints/rollwise-verl", "trainer.save_freq=50",
        "trainer.test_freq=25", *overrides])


# ---------------------------------------------------------------------------- GPU


@pytest.mark.slow
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
           "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
           "trainer.total_training_steps=2", "trainer.n_gpus_per_node=1", "trainer.nnodes=1",
           f"trainer.default_local_dir={tmp_path}", "trainer.save_freq=2", "trainer.test_freq=-1",
           "trainer.val_before_train=false", "data.max_response_length=64"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "rollwise/acc_mean" in result.stdout
    assert list(tmp_path.glob("global_step_2/data.pt"))
