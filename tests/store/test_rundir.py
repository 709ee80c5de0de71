"""Run directories never destroy each other; resumes continue the same run or refuse clearly."""

import json
import os

import pytest
import torch

from rollwise.store import checkpoint as ckpt
from rollwise.config import RunConfig
from rollwise.store.rundir import RunDirError, holds_a_run
from rollwise.track import MetricsLog, read_metrics
from rollwise.train import train
from tests.support.runs import tiny_config


@pytest.mark.slow
def test_a_second_run_into_the_same_directory_stops_and_overwrite_moves_the_old_one_aside(tmp_path):
    cfg = tiny_config(tmp_path, "run", steps=1)
    train(cfg)
    first_metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match="already holds a run.*--resume.*--overwrite"):
        train(cfg)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == first_metrics  # untouched
    train(cfg, overwrite=True)
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(moved) == 1 and (moved[0] / "metrics.jsonl").read_text() == first_metrics
    assert (moved[0] / "summary.json").is_file() and ckpt.list_checkpoints(moved[0])


def test_a_lone_config_file_is_not_a_run(tmp_path):
    (tmp_path / "config.yaml").write_text("steps: 1\n")
    assert not holds_a_run(tmp_path)


def test_resume_without_a_checkpoint_is_an_error_not_a_restart(tmp_path):
    cfg = tiny_config(tmp_path, "fresh", steps=1)
    with pytest.raises(RunDirError, match="no checkpoint"):
        train(cfg, resume=True)
    assert not (tmp_path / "fresh" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_resume_with_only_damaged_checkpoints_names_each_file(tmp_path):
    cfg = tiny_config(tmp_path, "damaged", steps=2, checkpoint_every=1)
    train(cfg)
    for _, path in ckpt.list_checkpoints(cfg.out_dir):
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError) as err:
        train(cfg.replace(steps=3), resume=True)
    assert "step-000001.safetensors" in str(err.value) and "step-000002.safetensors" in str(err.value)


@pytest.mark.slow
def test_resume_refuses_a_changed_configuration_and_names_the_field(tmp_path):
    cfg = tiny_config(tmp_path, "changed", steps=1)
    train(cfg)
    with pytest.raises(RunDirError, match="config field lr"):
        train(cfg.replace(steps=2, lr=1e-3), resume=True)
    with pytest.raises(RunDirError, match="config field data_seed"):
        train(cfg.replace(steps=2, data_seed=99), resume=True)


@pytest.mark.slow
def test_resume_refuses_a_changed_data_file(tmp_path):
    train_file, eval_file = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    rows = [{"id": i, "prompt": f"{i}+1", "answer": str(i + 1)} for i in range(12)]
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    eval_file.write_text("".join(json.dumps({"id": i, "prompt": f"{i}+2", "answer": str(i + 2)}) + "\n"
                                 for i in range(4)))
    model_dir = train(tiny_config(tmp_path, "base", steps=0))["model"]  # the cached tiny model reads these sums
    cfg = tiny_config(tmp_path, "file", steps=1, task="file", train_file=str(train_file), eval_file=str(eval_file),
                      verifier="exact", train_size=12, eval_size=4, model=model_dir)
    train(cfg)
    rows[3]["answer"] = "5"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RunDirError, match="training pool differs"):
        train(cfg.replace(steps=2), resume=True)


@pytest.mark.slow
def test_a_metrics_log_shorter_than_the_checkpoint_is_an_error(tmp_path):
    cfg = tiny_config(tmp_path, "short", steps=2, checkpoint_every=1)
    train(cfg)
    path = tmp_path / "short" / "metrics.jsonl"
    path.write_text(path.read_text()[:20])
    with pytest.raises(ValueError, match="truncated or replaced"):
        train(cfg.replace(steps=3), resume=True)
    log = MetricsLog(tmp_path / "m.jsonl")
    log.write({"step": 0})
    with pytest.raises(ValueError, match="checkpoint recorded"):
        log.truncate_to(10_000)
    assert b"\x00" not in (tmp_path / "m.jsonl").read_bytes()


def test_a_failed_checkpoint_write_removes_its_temporary_file_and_reports_the_space(tmp_path, monkeypatch):
    def full_disk(fd):  # the data is written; flushing it to the disk fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(ckpt.CheckpointError, match=r"needs [0-9.]+ MiB and [0-9.]+ MiB are free"):
        ckpt.save_checkpoint(tmp_path, 1, {"step": 1, "weights": torch.zeros(1000)})
    assert list(ckpt.checkpoint_dir(tmp_path).iterdir()) == []


def test_at_least_one_checkpoint_is_kept(tmp_path):
    with pytest.raises(ValueError, match="keep_checkpoints"):
        RunConfig(keep_checkpoints=0)
    with pytest.raises(ValueError, match="keep"):
        ckpt.save_checkpoint(tmp_path, 1, {"step": 1}, keep=0)


@pytest.mark.slow
def test_run_json_records_identity(tmp_path):
    cfg = tiny_config(tmp_path, "info", steps=1)
    train(cfg)
    info = json.loads((tmp_path / "info" / "run.json").read_text())
    assert len(info["identity"]["training pool"]) >= 16 and info["identity"]["model"]
    assert "verifier_protections" in info
