"""End-to-end runs of the recipe on a tiny randomly initialised model (no warm-up)."""

import json

import numpy as np
import pytest
import torch

from rollwise.track import read_metrics
from rollwise.train import train
from tests.support.runs import comparable, model_parameters, tiny_config

pytestmark = pytest.mark.slow  # every test here trains end to end


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
