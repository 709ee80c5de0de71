"""RPO partial rollouts end to end: real training runs of the tiny scratchpad model (seconds each).

The pieces (cuts, budgets, shaping, refresh, the cache) are unit-tested in test_partial.py and
test_cache.py; here they run inside the recipe: fewer generated tokens than full paths, the cache
filled and refreshed, an exact resume, and composition with the filters, selectors, allocators and
algorithms of the other issues.
"""

import numpy as np
import pytest
import torch

from rollwise.store.checkpoint import list_checkpoints, read_checkpoint
from rollwise.config import RunConfig
from rollwise.track import read_metrics
from rollwise.train import train
from tests.support.runs import comparable, model_parameters, tiny_config

# 8 prompts, all of them every step: step 1 fills the cache lazily (full groups), later steps are partial.
RPO = dict(tiny_codec="scratchpad", train_size=8, batch_prompts=8, samples_per_prompt=4, steps=3, lr=1e-3,
           rollout="partial")


def rpo_config(tmp_path, name, **changes) -> RunConfig:
    return tiny_config(tmp_path, name, **{**RPO, **changes})


def rows_of(cfg):
    return read_metrics(f"{cfg.out_dir}/metrics.jsonl")


def last_state(cfg) -> dict:
    return read_checkpoint(list_checkpoints(cfg.out_dir)[-1][1])


@pytest.mark.slow
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
        assert row["tokens"] == row["rpo_suffix_tokens"] + row["rpo_whole_tokens"]  # generated: suffixes, whole paths
        assert row["rpo_whole_samples"] == 8  # one whole path per group (the default whole refresh)
        assert row["rollouts"] == 32 and row["rpo_refreshed"] == 8
    assert sum(r["tokens"] for r in b[2:]) < 0.8 * sum(r["tokens"] for r in a[2:])
    # accounting: generated and prefix tokens apart, both adding up over the steps
    assert summary["total_tokens"] == sum(r["tokens"] for r in b[1:])
    assert summary["total_prefix_tokens"] == sum(r["rpo_prefix_tokens"] for r in b[1:]) > 0
    # the checkpoint holds the cache, refreshed at the last step, paths ending at their only EOS (if any)
    cache = last_state(partial)["components"]["rollout"]["cache"]
    assert (cache["length"] > 0).all() and (cache["stored_step"] == 3).all()
    eos = 1  # the tiny codecs' EOS id
    paths = np.split(cache["tokens"], np.cumsum(cache["length"])[:-1])
    assert all(eos not in p[:-1].tolist() for p in paths)
    assert last_state(full)["components"]["rollout"] == {}  # whole paths keep nothing


# All three cost factors at once (MoPPS + GVM + RPO, the mopps-gvm-rpo preset's keys) with dynamic sampling on
# top: every stateful component (posteriors, allocator estimates, cache, filter RNG) must resume exactly.
COMPOSED = dict(selector="mopps", allocator="gvm", gvm_p_source="presample", gvm_presamples=2, filter="dynamic",
                train_size=16, batch_prompts=4, ds_max_gen_batches=3, probe_every=2, probe_size=8, rpo_fill="upfront")


@pytest.mark.slow
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
    ca, cb = (last_state(c)["components"]["rollout"]["cache"] for c in (straight, split))
    assert all(np.array_equal(ca[k], cb[k]) for k in ("tokens", "length", "stored_step", "last_used"))


@pytest.mark.slow
def test_length_aware_reward_changes_rewards_never_acc(tmp_path):
    on = rpo_config(tmp_path, "on", steps=1, rpo_length_reward="on")
    off = rpo_config(tmp_path, "off", steps=1, rpo_length_reward="off")
    train(on)
    train(off)
    a, b = rows_of(on)[1], rows_of(off)[1]
    assert a["acc_mean"] == b["acc_mean"] and a["tokens"] == b["tokens"]  # same samples, same verdicts
    assert b["reward_mean"] == b["acc_mean"]
    assert 0.5 * a["acc_mean"] <= a["reward_mean"] < a["acc_mean"]  # correct answers shaped into [0.5, 1]


@pytest.mark.slow
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
@pytest.mark.slow
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
    (dict(rpo_cut="half"), "half_min, whole or a positive integer"),
    (dict(rpo_suffix_budget="0.5m"), "suffix budget '0.5m'"),
    (dict(rpo_refresh_epsilon=1.5), "rpo_refresh_epsilon=1.5"),
    (dict(rpo_length_alpha=0.0), "rpo_length_alpha=0.0"),
    (dict(rollout="half"), "rollout='half'"),
    (dict(rpo_cache_tokens=-1), "rpo_cache_tokens"),
])
def test_settings_are_validated_with_clear_messages(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        RunConfig(**changes)


@pytest.mark.slow
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


# Everything this component adds at once, on top of MoPPS + GVM (p from the predictor's Beta, estimates reused):
# whole-path samples in every continuing group, a whole group every third visit, cuts over the whole path, and
# prefix hints (a high threshold, so that this tiny run hints at all).
TRACKING = dict(selector="mopps", allocator="gvm", gvm_p_source="predictor", gvm_presamples=1, gvm_estimate_every=2,
                rpo_refresh="whole", rpo_whole_samples=1, rpo_whole_every=3, rpo_cut="whole", rpo_hints=True,
                rpo_hint_below=0.9, train_size=8, batch_prompts=4, probe_every=2, probe_size=4)


@pytest.mark.slow
def test_resume_is_exact_with_whole_refresh_hints_and_gvm_on_the_predictor(tmp_path):
    straight = rpo_config(tmp_path, "straight", steps=6, checkpoint_every=1, **TRACKING)
    train(straight)
    split = straight.replace(out_dir=str(tmp_path / "split"))
    train(split.replace(steps=4))  # evaluations (every 2 steps) fall on the same steps
    train(split, resume=True)
    assert comparable(rows_of(straight)) == comparable(rows_of(split))
    rows = rows_of(straight)[1:]
    assert any(r["rpo_whole_samples"] > 0 for r in rows) and any(r.get("rpo_hint_groups", 0) > 0 for r in rows)
    assert all(r["rollouts"] == 16 for r in rows)  # 4 prompts x 4: whole samples and hints inside the budget
    assert all(r["rpo_oldest_age_max"] >= 0 and 0 <= r["rpo_stale_share"] <= 1 for r in rows)
    pa, pb = model_parameters(straight.out_dir), model_parameters(split.out_dir)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    sa, sb = (last_state(c)["components"]["rollout"] for c in (straight, split))
    assert all(np.array_equal(sa["cache"][k], sb["cache"][k]) for k in ("tokens", "births", "length"))
    assert all(np.array_equal(sa["hints"]["correct"][k], sb["hints"]["correct"][k]) for k in ("tokens", "length"))


@pytest.mark.slow
def test_hints_never_reach_evaluation_or_the_probe(tmp_path, monkeypatch):
    """Full-path GRPO with hints: training groups continue hints, held-out evaluation and the probe (which needs
    a selector that predicts: MoPPS; the hints read their own whole-path Beta) never do."""
    import rollwise.rollout.collect as collect_module
    import rollwise.train as train_module

    seen = {"eval": [], "probe": []}

    class Recording:
        def __init__(self, engine, kind):
            self.engine, self.kind = engine, kind

        def generate(self, requests, params):
            seen[self.kind].extend(requests)
            return self.engine.generate(requests, params)

        def __getattr__(self, name):
            return getattr(self.engine, name)

    real_evaluate, real_roll_out = train_module.evaluate, train_module.roll_out
    monkeypatch.setattr(train_module, "evaluate",
                        lambda engine, *a, **k: real_evaluate(Recording(engine, "eval"), *a, **k))

    def probe_roll_out(ctx, *args, **kw):  # the recipe's roll_out import serves the probe and the prefilter only
        from dataclasses import replace
        return real_roll_out(replace(ctx, engine=Recording(ctx.engine, "probe")), *args, **kw)

    monkeypatch.setattr(train_module, "roll_out", probe_roll_out)
    cfg = rpo_config(tmp_path, "hints", rollout="full", selector="mopps", rpo_hints=True, rpo_hint_below=0.9,
                     steps=4, probe_every=2, probe_size=4, eval_every=2)
    train(cfg)
    rows = rows_of(cfg)
    assert any(r.get("rpo_hint_groups", 0) > 0 for r in rows[1:])  # training did hint
    assert all(r["rpo_partial_groups"] == 0 for r in rows[1:])  # full rollouts: no cached path is continued
    assert seen["eval"] and seen["probe"]
    assert all(r.prefix_ids == () for r in seen["eval"] + seen["probe"])
    assert collect_module.roll_out is real_roll_out  # the training rollouts went through the real one


@pytest.mark.slow
def test_speed_spends_the_budget_exactly_with_partial_rollouts(tmp_path):
    cfg = rpo_config(tmp_path, "speed", allocator="speed", speed_screen=2, steps=3, rpo_fill="upfront")
    summary = train(cfg)
    rows = rows_of(cfg)[1:]
    assert all(r["rollouts"] == 8 * 4 and r["alloc_presampled"] == 8 for r in rows)  # screening + rest = B x n
    assert all(r["alloc_min"] >= 2 for r in rows)  # every prompt keeps its screening samples
    assert summary["total_rollouts"] == cfg.train_size + 3 * 32
    assert all(r["rpo_whole_samples"] == 8 for r in rows)  # one whole path per group, drawn once (screening)
    assert all(r["time_gradnorm"] == 0 for r in rows)  # SPEED takes no gradient norms


def test_hint_and_refresh_settings_are_validated():
    with pytest.raises(ValueError, match="never samples a whole path"):
        RunConfig(rollout="partial", rpo_whole_samples=0)
    RunConfig(rollout="partial", rpo_refresh="suffix", rpo_whole_samples=0)  # the published rule needs neither
    with pytest.raises(ValueError, match="rpo_fill=upfront fills the experience cache"):
        RunConfig(rpo_fill="upfront")
    with pytest.raises(ValueError, match="speed_screen=8"):
        RunConfig(allocator="speed", speed_screen=8)


@pytest.mark.slow
def test_the_predictor_learns_from_the_whole_paths_inside_partial_groups(tmp_path):
    """Every step is partial (up-front fill); each group holds one sample from the prompt alone, which is the
    predictor's only whole-path evidence: with plain accumulation a + b grows by exactly one per visit."""
    cfg = rpo_config(tmp_path, "evidence", steps=2, rpo_fill="upfront", mopps_decay=1.0)
    train(cfg)
    state = last_state(cfg)["components"]["predictor"]
    assert np.allclose(np.asarray(state["a"]) + np.asarray(state["b"]), 2 + 2)  # Beta(1, 1) + one sample a step
    rows = rows_of(cfg)[1:]
    assert all(r["rpo_partial_groups"] == 8 and r["rpo_whole_samples"] == 8 for r in rows)
