"""GVM end to end: groups of different sizes through rollout, advantages, the update, metrics and resume."""

import numpy as np
import pytest
import torch

from rollwise.store.checkpoint import read_checkpoint
from rollwise.config import RunConfig
from rollwise.track import read_metrics
from rollwise.train import train
from tests.support.runs import comparable, model_parameters, tiny_config


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["grpo", "raft++"])
def test_gvm_trains_with_the_same_rollouts_as_fixed(tmp_path, algo):
    cfg = tiny_config(tmp_path, f"gvm-{algo}", algo=algo, allocator="gvm", gvm_presamples=2, steps=3)
    summary = train(cfg)
    rows = read_metrics(tmp_path / f"gvm-{algo}" / "metrics.jsonl")[1:]
    assert [r["rollouts"] for r in rows] == [16, 16, 16]  # B = 4 prompts x n = 4, pre-samples included
    assert all(r["alloc_presampled"] == 4 for r in rows)
    assert any(r["alloc_max"] > r["alloc_min"] for r in rows)  # groups of different sizes
    assert summary["total_rollouts"] == 48
    assert any(r["time_gradnorm"] > 0 for r in rows)  # measured whenever a pre-sample was correct


@pytest.mark.slow
def test_gvm_posterior_variant_resumes_exactly(tmp_path):
    straight = tiny_config(tmp_path, "straight", allocator="gvm", gvm_p_source="posterior", selector="mopps",
                           steps=4, checkpoint_every=2)
    train(straight)
    split = straight.replace(out_dir=str(tmp_path / "split"))
    train(split.replace(steps=2))
    train(split, resume=True)
    assert comparable(read_metrics(tmp_path / "straight" / "metrics.jsonl")) == \
        comparable(read_metrics(tmp_path / "split" / "metrics.jsonl"))
    a, b = model_parameters(straight.out_dir), model_parameters(split.out_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = read_checkpoint(sorted((tmp_path / "split" / "checkpoints").iterdir())[-1])
    assert np.isfinite(state["components"]["allocator"]["grad_sum"]).all()


def test_gvm_settings_are_checked_at_load():
    with pytest.raises(ValueError, match="gvm_presamples=8: must be at least 1 and below samples_per_prompt=8"):
        RunConfig(allocator="gvm", gvm_presamples=8)
    RunConfig(allocator="gvm", gvm_p_source="posterior", gvm_presamples=8, selector="mopps")  # no pre-samples then
