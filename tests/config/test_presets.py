"""Named presets: resolved between defaults and YAML/flags, listed by the command line, saved resolved."""

import pytest

from rollwise.cli import build_parser, config_from_args, main
from rollwise.config import RunConfig
from rollwise.config.presets import PRESETS, preset_values


def test_a_preset_sets_its_values_over_the_defaults():
    cfg = RunConfig.from_sources(preset="scratchpad")
    assert cfg.tiny_codec == "scratchpad" and cfg.task_options["max_terms"] == 6
    assert cfg.warmup_task_options == {"max_terms": 3} and cfg.steps == 400
    assert cfg.lr == RunConfig().lr  # what the preset does not set keeps its default


def test_the_sums_preset_is_the_default_run():
    assert RunConfig.from_sources(preset="sums") == RunConfig()


def test_yaml_overrides_the_preset_and_flags_override_both(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 50\nwarmup_target_acc: 0.3\n")
    cfg = RunConfig.from_sources(path, {"steps": "60"}, preset="scratchpad")
    assert cfg.steps == 60 and cfg.warmup_target_acc == 0.3 and cfg.tiny_codec == "scratchpad"
    args = build_parser().parse_args(["train", "--preset", "scratchpad", "--config", str(path), "--steps", "70",
                                      "--tiny-codec", "answer"])
    cfg = config_from_args(args)
    assert cfg.steps == 70 and cfg.warmup_target_acc == 0.3 and cfg.tiny_codec == "answer"
    assert cfg.task_options["max_terms"] == 6  # the rest of the preset stays


def test_a_run_saves_the_preset_resolved(tmp_path):
    cfg = RunConfig.from_sources(preset="scratchpad", overrides={"steps": 3})
    cfg.save(tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "tiny_codec: scratchpad" in text and "preset" not in text  # values, not a name to look up later
    assert RunConfig.from_sources(tmp_path / "config.yaml") == cfg


def test_unknown_presets_are_an_error_listing_the_known_ones(capsys):
    with pytest.raises(ValueError, match="unknown preset 'fast': expected one of dapo, gvm, mopps, .*scratchpad, smollm2-sums, sums"):
        RunConfig.from_sources(preset="fast")
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        RunConfig.from_sources(preset="scratchpad+fast")
    assert main(["train", "--preset", "fast", "--out-dir", "unused"]) != 0
    assert "unknown preset 'fast'" in capsys.readouterr().err


def test_a_testbed_composes_with_all_three_methods():
    composed = RunConfig.from_sources(preset="scratchpad+mopps-gvm-rpo")
    assert (composed.tiny_codec, composed.selector, composed.allocator, composed.rollout) == (
        "scratchpad", "mopps", "gvm", "partial")
    on_own_data = RunConfig.from_sources(preset="mopps")
    assert on_own_data.selector == "mopps" and on_own_data.tiny_codec == RunConfig().tiny_codec


def test_presets_are_listed_by_the_command_and_in_train_help(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name, preset in PRESETS.items():
        assert f"{name}: {preset.description}" in out
    assert 'tiny_codec: "scratchpad"' in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--preset NAME[+NAME...]" in capsys.readouterr().out


def test_preset_values_are_copies():
    values = preset_values("scratchpad")
    values["task_options"]["max_terms"] = 99
    assert preset_values("scratchpad")["task_options"]["max_terms"] == 6


def changed_from(cfg: RunConfig, base: RunConfig) -> set[str]:
    """The fields whose values differ between two configurations."""
    a, b = cfg.to_dict(), base.to_dict()
    return {k for k in a if a[k] != b[k]}


METHODS = ["mopps", "gvm", "rpo", "mopps-gvm", "mopps-rpo", "mopps-gvm-rpo"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_builds_a_valid_config_that_differs_from_the_default_in_its_own_keys_only(name):
    """A preset that names a key or value the config refuses would fail only when a user runs it; one that
    moved a field it does not declare (or declared nothing the default lacks) would not be the run it names."""
    changed = changed_from(RunConfig.from_sources(preset=name), RunConfig())
    assert changed <= set(preset_values(name))
    assert changed or name == "sums"  # only the default run's own name changes nothing


@pytest.mark.parametrize("testbed", ["scratchpad", "smollm2-sums", "dapo"])
@pytest.mark.parametrize("method", METHODS)
def test_a_method_preset_composes_with_a_testbed_by_plus(testbed, method):
    """testbed+method is the testbed's run with the method's fields on top: those fields as the method alone
    sets them, every other field as the testbed alone sets it, and the method does change the testbed's run."""
    composed = RunConfig.from_sources(preset=f"{testbed}+{method}")
    testbed_alone, method_alone = RunConfig.from_sources(preset=testbed), RunConfig.from_sources(preset=method)
    method_keys = set(preset_values(method))
    assert changed_from(composed, testbed_alone) and changed_from(composed, testbed_alone) <= method_keys
    assert all(getattr(composed, k) == getattr(method_alone, k) for k in method_keys)


def test_the_later_preset_wins_where_two_set_the_same_field():
    smollm2_last = RunConfig.from_sources(preset="scratchpad+smollm2-sums")
    scratchpad_last = RunConfig.from_sources(preset="smollm2-sums+scratchpad")
    assert smollm2_last.task_options == RunConfig.from_sources(preset="smollm2-sums").task_options
    assert scratchpad_last.task_options == RunConfig.from_sources(preset="scratchpad").task_options
    assert smollm2_last.task_options != scratchpad_last.task_options
    assert (smollm2_last.model, scratchpad_last.model) == ("smollm2", "smollm2")  # set by one of them only


def test_the_real_model_preset_trains_smollm2_with_lora_at_its_measured_temperature():
    cfg = RunConfig.from_sources(preset="smollm2-sums")
    assert (cfg.model, cfg.engine, cfg.temperature) == ("smollm2", "auto", 0.7)
    assert cfg.lora_r > 0 and cfg.task_options["max_terms"] == 2 and cfg.task_options["min_digits"] == 1
