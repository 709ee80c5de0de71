"""examples/trl/grpo_mopps.py, run as a user would: two GRPO steps in TRL with MoPPS selecting, on the built-in
tiny model exported by `rollwise export-model` (SmolLM2, the documented default, takes minutes a step on CPU),
then a second run started from the first one's posteriors (`--prior`)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

pytest.importorskip("trl")

from rollwise.integrations.selection import load_state  # noqa: E402
from rollwise.integrations.trl import LOG_FILE, STATE_FILE  # noqa: E402
from rollwise.track import read_metrics  # noqa: E402
from tests.support import REPO  # noqa: E402

SCRIPT = REPO / "examples" / "trl" / "grpo_mopps.py"


def example():
    spec = importlib.util.spec_from_file_location("grpo_mopps", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from rollwise.policy.export_command import export_model

    return export_model("tiny", tmp_path_factory.mktemp("models") / "tiny", log=lambda m: None)


def small_run(out, model, *extra):
    return ["--model", str(model), "--output-dir", str(out), "--steps", "2", "--prompts-per-step", "4",
            "--num-generations", "8", "--max-completion-length", "5", "--train-size", "64", "--lora-r", "0",
            "--learning-rate", "1e-4", "--temperature", "1.0", "--save-steps", "2", "--task-options", "{}", *extra]


@pytest.mark.slow
def test_the_trl_example_trains_with_mopps_selecting(tmp_path, tiny_dir):
    import torch

    torch.set_num_threads(1)
    module = example()
    module.main(small_run(tmp_path / "first", tiny_dir))
    records = read_metrics(tmp_path / "first" / LOG_FILE)
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["trials"] == [8.0] * 4 and len(set(r["ids"])) == 4 for r in records)
    assert sum(sum(r["successes"]) for r in records) > 0  # the warmed-up tiny model solves some sums
    state = load_state(tmp_path / "first" / "checkpoint-2" / STATE_FILE)["selection"]
    assert state["generation"] == 2 and (state["selector"]["a"] != 1).sum() > 0  # posteriors moved
    assert (tmp_path / "first" / "model.safetensors").is_file()
    # The outcome log replays: the pool's difficulty fields are its features' groups.
    from rollwise.predict.replay import load_run

    run = load_run(tmp_path / "first")
    assert [r.step for r in run.rows] == [1, 2] and run.features.keys and run.features.num_groups > 1

    # A second run starts from the first one's posteriors (its prior), not from Beta(1, 1).
    module.main(small_run(tmp_path / "second", tiny_dir, "--prior", str(tmp_path / "first")))
    second = load_state(tmp_path / "second" / "checkpoint-2" / STATE_FILE)["selection"]["selector"]
    np.testing.assert_array_equal(second["prior_a"], state["selector"]["a"])
    np.testing.assert_array_equal(second["prior_b"], state["selector"]["b"])


def test_paper_setup_sets_the_published_values_and_keeps_explicit_flags():
    module = example()
    args = module.parse_args(["--paper-setup", "mopps", "--learning-rate", "3e-6", "--model", "m"])
    assert (args.prompts_per_step, args.num_generations, args.clip_high, args.kl_coef) == (256, 8, 0.28, 0.0)
    assert args.learning_rate == 3e-6 and args.lora_r == 0
    json.dumps(vars(args))
    assert np.isclose(module.parse_args([]).learning_rate, 2e-4)


def test_prior_beliefs_read_rates_runs_and_trl_checkpoints(tmp_path):
    from rollwise.integrations.selection import save_state
    from rollwise.integrations.trl import prior_beliefs
    from rollwise.data.pool import PoolItem, PromptPool

    pool = PromptPool([PoolItem(i, f"{i} + 1 =", str(i + 1)) for i in range(4)], "basic_arithmetic")
    (tmp_path / "rates.json").write_text(json.dumps({"1": 0.25, "3": 1.0}))
    a, b = prior_beliefs(tmp_path / "rates.json", pool, weight=4.0)
    np.testing.assert_allclose(a, [1, 2, 1, 5])
    np.testing.assert_allclose(b, [1, 4, 1, 1])
    checkpoint = tmp_path / "out" / "checkpoint-7"
    checkpoint.mkdir(parents=True)
    selector = {"a": np.array([2.0, 3, 4, 5]), "b": np.ones(4), "prior_a": np.ones(4), "prior_b": np.ones(4)}
    save_state({"selection": {"selector": selector}, "log_offset": 0}, checkpoint / STATE_FILE)
    a, b = prior_beliefs(tmp_path / "out", pool)  # an output directory: its latest checkpoint
    np.testing.assert_array_equal(a, selector["a"])
    with pytest.raises(ValueError, match="3 rows"):
        prior_beliefs(checkpoint, PromptPool(pool.items[:3], "basic_arithmetic"))
    with pytest.raises(ValueError, match="no beliefs"):
        prior_beliefs("none", pool)
