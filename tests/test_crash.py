"""Crash safety: kill -9 and resume, SIGTERM checkpoints, interrupted checkpoint writes, NaN handling."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from rollwise.store import checkpoint as ckpt
from rollwise.algos.update import NonFiniteError, UpdateSettings, build_batch, update_policy
from rollwise.rollout.engine import Sample
from rollwise.policy.tiny import build_tiny_model
from rollwise.track import read_metrics
from rollwise.train import train
from tests.support import REPO
from tests.support.runs import comparable, model_parameters, tiny_config


def launch(cfg, tmp_path, *extra):
    path = tmp_path / f"{os.path.basename(cfg.out_dir)}.yaml"
    cfg.save(path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "rollwise.cli", "train", "--config", str(path), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def wait_for_rows(cfg, rows: int, proc, limit: float = 120.0) -> None:
    path = os.path.join(cfg.out_dir, "metrics.jsonl")
    wait_for(lambda: os.path.exists(path) and len(read_metrics(path)) >= rows, proc, limit)


def wait_for(condition, proc, limit: float = 120.0) -> None:
    deadline = time.time() + limit
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError("run made no progress")


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_rows", [3, 5])
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, kill_after_rows):
    straight = tiny_config(tmp_path, "straight", steps=6, checkpoint_every=2, selector="mopps", eval_every=3)
    train(straight)
    killed = straight.replace(out_dir=str(tmp_path / "killed"))
    proc = launch(killed, tmp_path)
    wait_for_rows(killed, kill_after_rows, proc)
    # The step's row is written just before its checkpoint: a kill between the two leaves no checkpoint yet,
    # which --resume rightly refuses. Kill once the first checkpoint is on disk, so the race cannot decide.
    wait_for(lambda: ckpt.list_checkpoints(killed.out_dir), proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    assert not (tmp_path / "killed" / "summary.json").exists()
    train(killed, resume=True)
    assert comparable(read_metrics(tmp_path / "straight" / "metrics.jsonl")) == \
        comparable(read_metrics(tmp_path / "killed" / "metrics.jsonl"))
    a, b = model_parameters(straight.out_dir), model_parameters(killed.out_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa = ckpt.read_checkpoint(ckpt.list_checkpoints(straight.out_dir)[-1][1])["components"]["predictor"]
    sb = ckpt.read_checkpoint(ckpt.list_checkpoints(killed.out_dir)[-1][1])["components"]["predictor"]
    assert np.array_equal(sa["a"], sb["a"]) and np.array_equal(sa["b"], sb["b"])


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    cfg = tiny_config(tmp_path, "term", steps=200, checkpoint_every=1000, eval_every=1000)
    proc = launch(cfg, tmp_path)
    wait_for_rows(cfg, 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    saved = ckpt.list_checkpoints(cfg.out_dir)
    assert len(saved) == 1 and 2 <= saved[0][0] < 200
    assert not (tmp_path / "term" / "summary.json").exists()
    summary = train(cfg.replace(steps=saved[0][0] + 1), resume=True)
    assert summary["interrupted"] is False


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, 1, {"step": 1, "value": "good"})

    def crash(fd):  # the data is written; flushing it to the disk fails
        raise OSError(28, "disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(ckpt.CheckpointError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, 2, {"step": 2})
    assert not list(ckpt.checkpoint_dir(tmp_path).glob("*.tmp"))
    monkeypatch.undo()
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [1]
    assert ckpt.load_latest_checkpoint(tmp_path)["value"] == "good"


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    ckpt.save_checkpoint(tmp_path, 1, {"step": 1})
    ckpt.save_checkpoint(tmp_path, 2, {"step": 2})
    ckpt.list_checkpoints(tmp_path)[-1][1].write_bytes(b"garbage")
    assert ckpt.load_latest_checkpoint(tmp_path)["step"] == 1


def _batch():
    samples = [Sample(0, (2, 3), (), [4, 1], True), Sample(0, (2, 3), (), [5, 1], True)]
    return build_batch(samples, np.array([1.0, -1.0]), pad_id=0)


def _settings(nonfinite):
    return UpdateSettings("grpo", 1.0, 0.2, 0.28, 1.0, 1, 1, 8, nonfinite)


# The schedule counts attempted updates, so a skipped first update steps it before any optimiser step.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
@pytest.mark.parametrize("nonfinite", ["skip", "stop"])
def test_nan_parameters_skip_the_update_or_stop(nonfinite):
    model = build_tiny_model(1, 16, 2)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    if nonfinite == "stop":
        with pytest.raises(NonFiniteError, match="non-finite"):
            update_policy(model, opt, sched, _batch(), _settings(nonfinite))
        return
    stats = update_policy(model, opt, sched, _batch(), _settings(nonfinite))
    assert stats["skipped_updates"] == 1 and stats["loss"] is None
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) | torch.isnan(before[k]).any() for k in before)


def test_no_checkpoint_is_written_from_corrupted_parameters(tmp_path):
    from types import SimpleNamespace

    from rollwise.run import save_checkpoint as _save

    model = build_tiny_model(1, 16, 2)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("inf")
    run = SimpleNamespace(policy=SimpleNamespace(model=model), out=tmp_path)  # the check runs before anything else
    with pytest.raises(NonFiniteError, match="no checkpoint written"):
        _save(run, 3, identity={})
    assert ckpt.list_checkpoints(tmp_path) == []
