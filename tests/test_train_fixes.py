"""Recipe fixes, each with a test that failed before: the probe's randomness, the final evaluation,
verifier counts booked to the phase that caused them, and group sizes that GRPO can use."""

import pytest
import torch

from rollwise.config import RunConfig
from rollwise.track import read_metrics
from rollwise.train import train
from tests.support.runs import comparable, model_parameters, tiny_config

PROBE_KEYS = ("probe_",)


def _training_rows(path):
    return [{k: v for k, v in r.items() if not k.startswith(PROBE_KEYS) and k not in ("eval_rollouts_total",
                                                                                        "eval_tokens_total")}
            for r in comparable(read_metrics(path))]


@pytest.mark.slow
def test_the_probe_does_not_change_training(tmp_path):
    with_probe = tiny_config(tmp_path, "probe", steps=4, selector="mopps", probe_every=1, probe_size=8)
    without = with_probe.replace(out_dir=str(tmp_path / "noprobe"), probe_every=0)
    train(with_probe)
    train(without)
    rows = read_metrics(tmp_path / "probe" / "metrics.jsonl")
    assert all("probe_spearman" in r for r in rows[1:])
    assert _training_rows(tmp_path / "probe" / "metrics.jsonl") == _training_rows(tmp_path / "noprobe" / "metrics.jsonl")
    a, b = model_parameters(with_probe.out_dir), model_parameters(without.out_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_final_evaluation_without_periodic_ones(tmp_path):
    cfg = tiny_config(tmp_path, "final", steps=3, eval_every=0)
    summary = train(cfg)
    rows = read_metrics(tmp_path / "final" / "metrics.jsonl")
    assert "eval_temp_acc" in rows[0] and "eval_temp_acc" in rows[-1]
    assert not any("eval_temp_acc" in r for r in rows[1:-1])
    assert summary["final_eval"] is not summary["initial_eval"]
    assert summary["final_eval"] == {k: rows[-1][k] for k in summary["final_eval"]}


@pytest.mark.slow
def test_evaluation_verifier_counts_never_leak_into_training_metrics(tmp_path, monkeypatch):
    from rollwise import train as recipe

    real = recipe.evaluate

    def evaluate_with_a_rejection(engine, codec, verifier, items, **kw):
        result = real(engine, codec, verifier, items, **kw)
        verifier.score_batch(["x" * 20_000], items[:1])  # over the guard's length limit: counted as rejected
        return result

    monkeypatch.setattr(recipe, "evaluate", evaluate_with_a_rejection)
    train(tiny_config(tmp_path, "counts", steps=3, eval_every=1))
    rows = read_metrics(tmp_path / "counts" / "metrics.jsonl")
    assert all(r["eval_verify_rejected"] == 1 for r in rows)
    assert all(r["verify_rejected"] == 0 for r in rows[1:])


def test_group_relative_algorithms_refuse_groups_of_one():
    with pytest.raises(ValueError, match="at least 2 samples per prompt"):
        RunConfig(samples_per_prompt=1)
    assert RunConfig(samples_per_prompt=2).samples_per_prompt == 2


@pytest.mark.slow
def test_the_trained_policy_is_exported_and_loads_as_a_model_directory(tmp_path):
    from pathlib import Path

    from rollwise.policy.models import load_model_dir_or_file
    from rollwise.policy.tiny import TinyCodec

    cfg = tiny_config(tmp_path, "export", steps=2)
    summary = train(cfg)
    model_dir = Path(summary["model_dir"])
    assert model_dir == tmp_path / "export" / "model"
    model, codec = load_model_dir_or_file(model_dir)
    assert isinstance(codec, TinyCodec)
    trained = model_parameters(cfg.out_dir)
    loaded = model.state_dict()
    assert all(torch.equal(trained[k], loaded[k]) for k in trained if k in loaded)
    again = train(tiny_config(tmp_path, "from-export", steps=1, model=str(model_dir)))  # --model DIR
    assert again["model"] == str(model_dir)


@pytest.mark.slow
def test_the_verifier_budget_and_breaker_come_from_the_config(tmp_path):
    from rollwise.run import build_run

    cfg = tiny_config(tmp_path, "guard", verify_batch_budget=12.5, verify_breaker_timeouts=0, verify_breaker_rate=0.5)
    run = build_run(cfg, tmp_path / "guard", lambda *a, **k: None)
    try:
        guard = run.ctx.verifier
        assert (guard.batch_budget, guard.breaker_timeouts, guard.breaker_rate) == (12.5, None, 0.5)
    finally:
        run.ctx.verifier.close()
    with pytest.raises(ValueError, match="verify_breaker_rate=0"):
        RunConfig(verify_breaker_rate=0.0)
    with pytest.raises(ValueError, match="verify_batch_budget=-1"):
        RunConfig(verify_batch_budget=-1.0)
