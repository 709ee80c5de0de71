"""The run configuration: defaults, YAML, command-line overrides and validation."""

import dataclasses

import pytest
import yaml

from rollwise.cli import build_parser, config_from_args
from rollwise.config import RunConfig


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 7\nselector: mopps\ntask_options: {max_terms: 3}\n")
    cfg = RunConfig.from_sources(path, {"steps": "9"})
    assert cfg.steps == 9 and cfg.selector == "mopps" and cfg.task_options == {"max_terms": 3}


def test_saved_config_round_trips(tmp_path):
    cfg = RunConfig(lr=1e-4, betas=[0.9, 0.95])
    cfg.save(tmp_path / "c.yaml")
    assert RunConfig.from_sources(tmp_path / "c.yaml") == cfg


def test_command_line_flags_build_the_same_object():
    args = build_parser().parse_args(["train", "--batch-prompts", "16", "--task-options", "{max_terms: 3}",
                                      "--progress", "false"])
    cfg = config_from_args(args)
    assert cfg == RunConfig(batch_prompts=16, task_options={"max_terms": 3}, progress=False)


@pytest.mark.parametrize("changes, message", [
    ({"selector": "best"}, "selector='best': expected one of uniform"),
    ({"batch_prompts": 0}, "batch_prompts=0: must be at least 1"),
    ({"mopps_decay": 0}, "mopps_decay"),
    ({"temperature": 0}, "temperature"),
    ({"mopps_band": [0.8, 0.2]}, "mopps_band"),
    ({"no_such_key": 1}, "unknown config key"),
    ({"steps": "ten"}, "config steps='ten': expected int"),
    ({"task": "file"}, "task=file needs train_file"),
])
def test_bad_values_are_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict(changes)


def test_task_options_default_per_task():
    assert RunConfig().task_options["max_terms"] == 3 and RunConfig().warmup_task_options == {"max_terms": 2}
    countdown = RunConfig(task="countdown")
    assert countdown.task_options == {} and countdown.warmup_task_options == {}
    assert RunConfig(task_options={"max_terms": 4}).task_options == {"max_terms": 4}


def test_tiny_model_refuses_tasks_it_cannot_read(tmp_path):
    from rollwise.policy.models import ensure_tiny

    with pytest.raises(ValueError, match="reads sums .* not task=countdown: pass --model DIR"):
        ensure_tiny(RunConfig(task="countdown", cache_dir=str(tmp_path)))


def test_config_sections_follow_the_data_flow_and_yaml_may_nest_them(tmp_path):
    from rollwise.config import SECTIONS, flatten_sections, load_yaml

    assert list(SECTIONS)[:7] == ["run", "data", "policy", "predict", "select", "allocate", "sampling"]
    assert not set(SECTIONS) & {f.name for f in dataclasses.fields(RunConfig)}, "a section named like a field"
    sections = RunConfig.sections()
    assert "lr" in sections["algorithm"] and "selector" in sections["select"] and "task" in sections["data"]
    assert sum(len(v) for v in sections.values()) == len(dataclasses.fields(RunConfig))
    cfg = RunConfig(steps=7, lr=1e-4)
    cfg.save(tmp_path / "c.yaml")
    saved = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert saved["algorithm"]["lr"] == 1e-4 and saved["schedule"]["steps"] == 7 and "lr" not in saved
    assert RunConfig.from_sources(tmp_path / "c.yaml") == cfg
    # a config.yaml an earlier rollwise wrote, with the predictor's settings still under `select`, reads back
    earlier = {"select": {"selector": "mopps", "mopps_decay": 0.7, "probe_every": 5}}
    assert flatten_sections(earlier) == {"selector": "mopps", "mopps_decay": 0.7, "probe_every": 5}
    with pytest.raises(ValueError, match="lr belongs to section 'algorithm', not 'select'"):
        flatten_sections({"select": {"lr": 0.1}})
    (tmp_path / "mixed.yaml").write_text("algorithm:\n  lr: 0.002\nsteps: 3\n")
    assert load_yaml(tmp_path / "mixed.yaml") == {"lr": 0.002, "steps": 3}
    with pytest.raises(ValueError, match="lr belongs to section 'algorithm', not 'sampling'"):
        flatten_sections({"sampling": {"lr": 0.1}})
