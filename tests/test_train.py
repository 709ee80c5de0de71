"""End-to-end runs of the recipe on a tiny randomly initialised model (no warm-up)."""

import json

import numpy as np
import pytest
import torch

from rollwise.store.checkpoint import list_checkpoints, read_checkpoint
from rollwise.config import RunConfig
from rollwise.track import read_metrics
from rollwise.train import train

TIMING_KEYS = {"time_select", "time_gen", "time_verify", "time_update", "seconds", "wall_seconds", "rpo_fill_seconds"}


# One-digit sums of 2-3 terms: a 1-layer model warmed up for a few seconds answers some of them, so
# groups have mixed outcomes and GRPO has a gradient (a random model never answers right: zero advantages).
TEST_TASK = {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1, "operators": ["+"],
             "allow_parentheses": False, "allow_negation": False}


def tiny_config(tmp_path, name="run", **changes) -> RunConfig:
    # The warmed-up test model is cached once per test session (tmp_path's parent is the session's base).
    base = dict(out_dir=str(tmp_path / name), cache_dir=str(tmp_path.parent / "tiny-cache"), task_options=TEST_TASK,
                warmup_task_options={"max_terms": 3}, warmup_steps=400, warmup_batch=64, warmup_items=300, tiny_layers=1,
                tiny_hidden=32, tiny_heads=2, train_size=40, eval_size=12, batch_prompts=4, samples_per_prompt=4,
                steps=2, eval_every=2, eval_samples=2, checkpoint_every=1, probe_every=0, progress=False,
                lr=1e-2, verify_workers=1, warmup_target_acc=0.0)
    base.update(changes)
    return RunConfig(**base)


def model_parameters(out_dir) -> dict:
    state = read_checkpoint(list_checkpoints(out_dir)[-1][1])
    return state["components"]["model"]


def comparable(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS and not k.startswith("time_")} for r in rows]


def test_two_step_smoke_run_changes_parameters(tmp_path):
    cfg = tiny_config(tmp_path)
    summary = train(cfg)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2]
    for row in rows[1:]:
        assert row["rollouts"] == 16 and row["prompts"] == 4 and row["tokens"] > 0
        assert np.isfinite(row["loss"]) and np.isfinite(row["grad_norm"])
    assert "eval_temp_acc" in rows[0] and "eval_temp_acc" in rows[2] and "eval_greedy_se" in rows[2]
    assert summary["total_rollouts"] == 32
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final_eval"] == summary["final_eval"]
    assert (tmp_path / "run" / "config.yaml").is_file()
    # parameters moved away from the initial (cached) model
    from rollwise.policy.models import load_policy

    initial = load_policy(cfg).model.state_dict()
    trained = model_parameters(cfg.out_dir)
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)


@pytest.mark.parametrize("selector", ["uniform", "mopps"])
def test_resume_matches_uninterrupted_run(tmp_path, selector):
    straight = tiny_config(tmp_path, "straight", steps=4, selector=selector, probe_every=2, probe_size=8)
    train(straight)
    split = straight.replace(out_dir=str(tmp_path / "split"))
    train(split.replace(steps=2))
    # the first half ran with steps=2; continue the same directory to 4 steps
    summary = train(split, resume=True)
    assert summary["total_rollouts"] == 64
    a = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    b = read_metrics(tmp_path / "split" / "metrics.jsonl")
    assert comparable(a) == comparable(b)
    pa, pb = model_parameters(straight.out_dir), model_parameters(split.out_dir)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
