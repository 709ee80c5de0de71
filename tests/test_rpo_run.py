"""RPO partial rollouts end to end: real training runs of the tiny scratchpad model (seconds each).

The pieces (cuts, budgets, shaping, refresh, the cache) are unit-tested in test_partial.py and
test_cache.py; here they run inside the recipe: fewer generated tokens than full paths, the cache
filled and refreshed, an exact resume, and composition with the filters, selectors, allocators and
algorithms of the other issues.
"""

import numpy as np
import pytest
import torch

from rollwise.checkpoint import list_checkpoints, read_checkpoint
from rollwise.config import RunConfig
from rollwise.track import read_metrics
from rollwise.train import train
from tests.test_train import comparable, model_parameters, tiny_config

# 8 prompts, all of them every step: step 1 fills the cache lazily (full groups), later steps are partial.
RPO = dict(tiny_codec="scratchpad", train_size=8, batch_prompts=8, samples_per_prompt=4, steps=3, lr=1e-3,
           rollout="partial")


def rpo_config(tmp_path, name, **changes) -> RunConfig:
    return tiny_config(tmp_path, name, **{**RPO, **changes})


def rows_of(cfg):
    return read_metrics(f"{cfg.out_dir}/metrics.jsonl")


def last_state(cfg) -> dict:
    return read_checkpoint(list_checkpoints(cfg.out_dir)[-1][1])


def test_partial_run_generates_fewer_tokens_and_fills_and_refreshes_its_cache(tmp_path):
    full = rpo_config(tmp_path, "full", rollout="full")
    partial = rpo_config(tmp_path, "partial")
    train(full)
    summary = train(partial)
    a, b = rows_of(full), rows_of(partial)
    # step 1: same seed, nothing cached -> the same full groups, the same tokens
    assert b[1]["rpo_partial_groups"] == 0 and b[1]["rpo_full_groups"] == 8 and b[1]["tokens"] == a[1]["tokens"]
    assert b[1]["rpo_cache_paths"] == 8 and b[1]["rpo_refreshed"] == 8  # lazily filled from step 1's groups
    for row in b[2:]:
        assert row["rpo_partial_groups"] == 8 and row["rpo_full_groups"] == 0
        assert row["rpo_prefix_tokens"] > 0 and row["rpo_cut_mean"] >= 1 and row["rpo_cache_age_mean"] == 1
        assert row["tokens"] == row["rpo_suffix_tokens"]  # generated = suffixes only
        assert row["rollouts"] == 32 and row["rpo_refreshed"] == 8
    assert sum(r["tokens"] for r in b[2:]) < 0.8 * sum(r["tokens"] for r in a[2:])
    # accounting: generated and prefix tokens apart, both adding up over the steps
    assert summary["total_tokens"] == sum(r["tokens"] for r in b[1:])
    assert summary["total_prefix_tokens"] == sum(r["rpo_prefix_tokens"] for r in b[1:]) > 0
    # the checkpoint holds the cache, refreshed at the last step, paths ending at their only EOS (if any)
    cache = last_state(partial)["components"]["rpo_cache"]["cache"]
    assert (cache["length"] > 0).all() and (cache["stored_step"] == 3).all()
    eos = 1  # the tiny codecs' EOS id
    paths = np.split(cache["tokens"], np.cumsum(cache["length"])[:-1])
    assert all(eos not in p[:-1].tolist() for p in paths)
    assert "rpo_cache" not in last_state(full)["components"]


# All three cost factors at once (MoPPS + GVM + RPO, the mopps-gvm-rpo preset's keys) with dynamic sampling on
# top: every stateful component (posteriors, allocator estimates, cache, filter RNG) must resume exactly.
COMPOSED = dict(selector="mopps", allocator="gvm", gvm_p_source="presample", gvm_presamples=2, filter="dynamic",
                train_size=16, batch_prompts=4, ds_max_gen_batches=3, probe_every=2, probe_size=8, rpo_fill="upfront")


@pytest.mark.parametrize("changes", [{}, COMPOSED], ids=["rpo", "mopps-gvm-rpo-dynamic"])
def test_resume_is_exact_with_the_cache(tmp_path, changes):
    straight = rpo_config(tmp_path, "straight", steps=4, checkpoint_every=1, **changes)
    train(straight)
    split = straight.replace(out_dir=str(tmp_path / "split"))
    train(split.replace(steps=2))
    train(split, resume=True)
    assert comparable(rows_of(straight)) == comparable(rows_of(split))
    rows = rows_of(straight)[1:]
    assert all(r["rpo_partial_groups"] > 0 for r in rows[1:])
    if changes:  # each component acted: pre-samples, resampled generation batches, probes
        assert all(r["alloc_presampled"] > 0 for r in rows)
        assert any(r["gen_batches"] > 1 for r in rows) and any("probe_spearman" in r for r in rows)
    pa, pb = model_parameters(straight.out_dir), model_parameters(split.out_dir)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    ca, cb = (last_state(c)["components"]["rpo_cache"]["cache"] for c in (straight, split))
    assert all(np.array_equal(ca[k], cb[k]) for k in ("tokens", "length", "stored_step", "last_used"))


def test_length_aware_reward_changes_rewards_never_acc(tmp_path):
    on = rpo_config(tmp_path, "on", steps=1, rpo_length_reward="on")
    off = rpo_config(tmp_path, "off", steps=1, rpo_length_reward="off")
    train(on)
    train(off)
    a, b = rows_of(on)[1], rows_of(off)[1]
    assert a["acc_mean"] == b["acc_mean"] and a["tokens"] == b["tokens"]  # same samples, same verdicts
    assert b["reward_mean"] == b["acc_mean"]
    assert 0.5 * a["acc_mean"] <= a["reward_mean"] < a["acc_mean"]  # correct answers shaped into [0.5, 1]


def test_soft_overlong_punishment_applies_to_full_rollouts(tmp_path):
    # A buffer as long as the limit: every answer lies inside it, so every reward drops below its acc.
    cfg = rpo_config(tmp_path, "overlong", steps=1, rollout="full", max_new_tokens=12, overlong_buffer=12)
    train(cfg)
    row = rows_of(cfg)[1]
    assert row["reward_mean"] < row["acc_mean"] and "rpo_partial_groups" not in row
    with pytest.raises(ValueError, match="overlong_buffer=13 exceeds max_new_tokens=12"):
        cfg.replace(overlong_buffer=13)


@pytest.mark.parametrize("changes", [
    dict(filter="dynamic", train_size=16, batch_prompts=4, ds_max_gen_batches=3),
    dict(selector="mopps"),
    dict(allocator="gvm", gvm_presamples=2),
    dict(algo="raft"),
    dict(algo="raft++"),
    dict(algo="reinforce++"),
    dict(algo="ppo"),
], ids=lambda c: "-".join(f"{v}" for v in c.values())[:30])
def test_partial_rollouts_compose(tmp_path, changes):
    """Up-front fill (booked as training cost): every step is partial, with each component of the other issues."""
    cfg = rpo_config(tmp_path, "run", steps=2, rpo_fill="upfront", **changes)
    summary = train(cfg)
    rows = rows_of(cfg)
    assert rows[0]["rpo_fill_rollouts"] == cfg.train_size and rows[0]["rpo_fill_tokens"] > 0
    assert summary["total_rollouts"] == cfg.train_size + sum(r["rollouts"] for r in rows[1:])
    for row in rows[1:]:
        assert row["rpo_full_groups"] == 0 and row["rpo_partial_groups"] == row["prompts"] > 0
        assert row["loss"] is None or np.isfinite(row["loss"])
        assert row["rpo_refreshed"] == row["prompts"]  # discarded groups refresh the cache too
    if cfg.allocator == "gvm":
        assert any(r["alloc_presampled"] > 0 for r in rows[1:])


def test_the_dapo_preset_turns_on_all_four_pieces():
    cfg = RunConfig.from_sources(preset="dapo")
    assert cfg.clip_high > cfg.clip_low and cfg.filter == "dynamic" and cfg.overlong_buffer > 0
    assert cfg.overlong_penalty == 1.0 and cfg.max_new_tokens - cfg.overlong_buffer >= 24  # past correct answers
    rpo = RunConfig.from_sources(preset="dapo", overrides={"rollout": "partial"})
    assert rpo.length_reward and rpo.filter == "dynamic"


@pytest.mark.parametrize("changes, message", [
    (dict(rpo_cut="0"), "rpo_cut='0'"),
    (dict(rpo_cut="half"), "half_min or a positive integer"),
    (dict(rpo_suffix_budget="0.5m"), "suffix budget '0.5m'"),
    (dict(rpo_refresh_epsilon=1.5), "rpo_refresh_epsilon=1.5"),
    (dict(rpo_length_alpha=0.0), "rpo_length_alpha=0.0"),
    (dict(rollout="half"), "rollout='half'"),
    (dict(rpo_cache_tokens=-1), "rpo_cache_tokens"),
])
def test_settings_are_validated_with_clear_messages(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        RunConfig(**changes)


def test_a_cache_budget_below_one_path_is_refused_before_any_compute(tmp_path):
    with pytest.raises(ValueError, match="rpo_cache_tokens=3 cannot hold one path"):
        train(rpo_config(tmp_path, "small", rpo_cache_tokens=3))


def test_the_rollout_setting_survives_a_saved_config(tmp_path):
    """`rollout` is a field of the sampling section: nested and flat YAML both read it back."""
    cfg = RunConfig(rollout="partial", rpo_cut="4", rpo_suffix_budget="2m")
    cfg.save(tmp_path / "config.yaml")
    assert RunConfig.from_sources(tmp_path / "config.yaml") == cfg
    (tmp_path / "flat.yaml").write_text("rollout: partial\n")
    assert RunConfig.from_sources(tmp_path / "flat.yaml").rollout == "partial"
