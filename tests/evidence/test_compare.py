"""Compare orchestration with a fake launcher (synthetic runs), plus one optional real tiny comparison."""

import json
from pathlib import Path

import pytest

from rollwise.cli import build_parser
from rollwise.evidence.compare import run_compare, run_status
from rollwise.evidence.compare_cli import parse_variant, spec_from_args

BASE = {"steps": 4, "eval_every": 2, "batch_prompts": 4, "train_size": 40}
VARIANTS = {"uniform": {}, "mopps": {"selector": "mopps"}}


class FakeLauncher:
    """Writes a finished run at once: accuracy rises faster under mopps; records every call."""

    def __init__(self, interrupt_at: int | None = None, fail: str | None = None, stop_at: int | None = None):
        self.calls, self.interrupt_at, self.fail, self.stop_at = [], interrupt_at, fail, stop_at

    def __call__(self, cfg, resume: bool) -> Path:
        run_dir = Path(cfg.out_dir)
        self.calls.append((run_dir.parent.name, cfg.seed, resume))
        if self.interrupt_at and len(self.calls) > self.interrupt_at:
            raise KeyboardInterrupt  # Ctrl-C reached every run
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.yaml")
        rate = 0.1 if cfg.selector == "mopps" else 0.05
        rows = [{"step": s, "total_rollouts": 16 * s, "total_tokens": 80 * s, "seconds": float(s),
                 "wall_seconds": s + 0.1, "effective_ratio": 0.5 if s else None,
                 **({"eval_temp_acc": 0.2 + rate * s + 0.01 * cfg.seed} if s % cfg.eval_every == 0 else {})}
                for s in range(cfg.steps + 1)]
        if len(self.calls) == self.interrupt_at:  # killed half-way: metrics and a checkpoint, no summary
            (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            (run_dir / "checkpoints" / "step-000001.pt").write_bytes(b"x")
            raise KeyboardInterrupt
        if self.fail and run_dir.parent.name == self.fail:
            raise RuntimeError("verifier exploded")
        if self.stop_at is not None:  # asked to stop at a step: checkpointed there, an interrupted summary
            (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:self.stop_at + 1]))
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            (run_dir / "checkpoints" / f"step-{self.stop_at:06d}.pt").write_bytes(b"x")
            (run_dir / "summary.json").write_text(json.dumps({"interrupted": True, "out_dir": str(run_dir)}))
            return run_dir
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (run_dir / "summary.json").write_text(json.dumps({"interrupted": False, "out_dir": str(run_dir)}))
        return run_dir


def test_compare_runs_every_variant_and_seed(tmp_path):
    fake = FakeLauncher()
    seen = []
    summary = run_compare(BASE, VARIANTS, [0, 1], str(tmp_path / "cmp"), parallel=2, launcher=fake,
                          prepare=lambda cfg, log: seen.append(cfg.selector), log=lambda m: None)
    assert sorted(fake.calls) == [("mopps", 0, False), ("mopps", 1, False), ("uniform", 0, False), ("uniform", 1, False)]
    assert sorted(seen) == ["mopps", "uniform"]  # the initial policy once per distinct configuration
    cfg = (tmp_path / "cmp" / "mopps" / "seed-1" / "config.yaml").read_text()
    assert "seed: 1" in cfg and "threads: 1" in cfg and "progress: false" in cfg
    assert list(summary["variants"]) == ["uniform", "mopps"] and summary["baseline"] == "uniform"
    # uniform ends at 0.4 / 0.41 (target 0.405); mopps reaches it at step 2 on its mean curve, uniform at 4
    assert summary["target"] == pytest.approx(0.405)
    assert summary["variants"]["mopps"]["ratios"]["steps"] == pytest.approx(0.5)
    for name in ("summary.json", "report.md", "report.html", "accuracy.png", "compare.yaml"):
        assert (tmp_path / "cmp" / name).is_file()


def test_interrupted_compare_finishes_only_the_missing_runs(tmp_path):
    out = str(tmp_path / "cmp")
    with pytest.raises(KeyboardInterrupt):
        run_compare(BASE, VARIANTS, [0, 1], out, launcher=FakeLauncher(interrupt_at=3), log=lambda m: None)
    statuses = [run_status(tmp_path / "cmp" / v / f"seed-{s}") for v in ("uniform", "mopps") for s in (0, 1)]
    assert statuses == ["done", "done", "resume", "new"]
    again = FakeLauncher()
    summary = run_compare(BASE, VARIANTS, [0, 1], out, launcher=again, log=lambda m: None)
    assert again.calls == [("mopps", 0, True), ("mopps", 1, False)]
    assert summary["variants"]["mopps"]["to_target"]["per_seed"]["steps"]["runs"] == 2
    third = FakeLauncher()
    run_compare(BASE, VARIANTS, [0, 1], out, launcher=third, log=lambda m: None)
    assert third.calls == []  # everything done: only the report is rewritten


def test_failed_run_is_reported_and_others_finish(tmp_path):
    with pytest.raises(RuntimeError, match="mopps/seed-0: failed: verifier exploded"):
        run_compare(BASE, VARIANTS, [0], str(tmp_path / "cmp"), launcher=FakeLauncher(fail="mopps"), log=lambda m: None)
    assert run_status(tmp_path / "cmp" / "uniform" / "seed-0") == "done"


def test_rerun_with_another_configuration_is_refused(tmp_path):
    out = str(tmp_path / "cmp")
    run_compare(BASE, {"uniform": {}}, [0], out, launcher=FakeLauncher(), log=lambda m: None)
    with pytest.raises(ValueError, match="steps: 4 there, 6 now"):
        run_compare({**BASE, "steps": 6}, {"uniform": {}}, [0], out, launcher=FakeLauncher(), log=lambda m: None)


def test_invalid_plans_fail_before_running(tmp_path):
    fake = FakeLauncher()
    for variants, message in [({"a b": {}}, "variant name"), ({"x": {"seed": 3}}, "set per run"),
                              ({"x": {"selector": "nope"}}, "selector"), ({}, "no variants")]:
        with pytest.raises(ValueError, match=message):
            run_compare(BASE, variants, [0], str(tmp_path / "cmp"), launcher=fake, log=lambda m: None)
    assert fake.calls == []


def test_runs_stopped_at_a_step_count_as_finished_until_a_call_without_it(tmp_path):
    out = str(tmp_path / "cmp")
    stopping = FakeLauncher(stop_at=2)
    summary = run_compare(BASE, VARIANTS, [0], out, launcher=stopping, log=lambda m: None, stop_at_step=2)
    assert sorted(stopping.calls) == [("mopps", 0, False), ("uniform", 0, False)]
    assert summary["variants"]["uniform"]["runs"][0]["final_step"] == 2  # the report reads the rows so far
    again = FakeLauncher(stop_at=2)
    run_compare(BASE, VARIANTS, [0], out, launcher=again, log=lambda m: None, stop_at_step=2)
    assert again.calls == []  # both got there: nothing launched
    with pytest.raises(RuntimeError, match="2 of 2 runs did not finish"):  # short of the step asked for
        run_compare(BASE, VARIANTS, [0], out, launcher=FakeLauncher(stop_at=2), log=lambda m: None, stop_at_step=3)
    to_the_end = FakeLauncher()
    run_compare(BASE, VARIANTS, [0], out, launcher=to_the_end, log=lambda m: None)
    assert sorted(to_the_end.calls) == [("mopps", 0, True), ("uniform", 0, True)]  # resumed to the budget


def test_seed_by_seed_launches_a_seeds_variants_side_by_side_before_the_next_seed(tmp_path):
    fake = FakeLauncher()
    run_compare(BASE, {**VARIANTS, "dynamic": {"filter": "dynamic"}}, [0, 1], str(tmp_path / "cmp"), parallel=3,
                launcher=fake, log=lambda m: None, seed_by_seed=True)
    assert [seed for _, seed, _ in fake.calls] == [0, 0, 0, 1, 1, 1]
    assert sorted(fake.calls[:3]) == [("dynamic", 0, False), ("mopps", 0, False), ("uniform", 0, False)]


def test_the_default_launcher_stops_a_run_at_the_step_asked_for(tmp_path, monkeypatch):
    """launch_subprocess with stop_at_step: SIGTERM once the run's metrics reach it (the run checkpoints and
    exits 0), and run_compare hands its stop step to the default launcher."""
    import signal
    import subprocess

    import rollwise.evidence.compare as compare
    from rollwise.config import RunConfig

    class FakeTrain:  # a training process that logs one step per poll until it is signalled
        signals = []

        def __init__(self, cmd, **kwargs):
            self.run_dir, self.step, self.returncode = Path(cmd[-1]).parent, 0, None

        def poll(self):
            with open(self.run_dir / "metrics.jsonl", "a") as rows:
                rows.write(json.dumps({"step": self.step}) + "\n")
            self.step += 1
            return self.returncode

        def send_signal(self, sig):
            self.signals.append((sig, self.step - 1))
            self.returncode = 0

        def wait(self):
            return self.returncode

    monkeypatch.setattr(compare, "STOP_POLL_SECONDS", 0.0)
    monkeypatch.setattr(subprocess, "Popen", FakeTrain)
    cfg = RunConfig.from_dict({**BASE, "out_dir": str(tmp_path / "run")})
    assert compare.launch_subprocess(cfg, resume=False, stop_at_step=3) == tmp_path / "run"
    assert FakeTrain.signals == [(signal.SIGTERM, 3)] and compare.last_step(tmp_path / "run") == 3
    assert (tmp_path / "run" / "config.yaml").is_file()

    seen = []
    monkeypatch.setattr(compare, "launch_subprocess", lambda cfg, resume, stop_at_step=None: seen.append(stop_at_step))
    with pytest.raises(RuntimeError):  # the recording launcher runs nothing
        run_compare(BASE, {"uniform": {}}, [0], str(tmp_path / "cmp"), prepare=lambda cfg, log: None,
                    log=lambda m: None, stop_at_step=5)
    assert seen == [5]


def test_parse_variant():
    assert parse_variant("uniform:") == ("uniform", {})
    assert parse_variant("m:selector=mopps, mopps-band=[0.2,0.8],lr=1e-3") == (
        "m", {"selector": "mopps", "mopps_band": [0.2, 0.8], "lr": "1e-3"})
    with pytest.raises(ValueError, match="NAME:KEY=VALUE"):
        parse_variant("mopps")
    with pytest.raises(ValueError, match="not KEY=VALUE"):
        parse_variant("mopps:selector")


def test_spec_from_yaml_file_and_flags(tmp_path):
    spec_file = tmp_path / "cmp.yaml"
    spec_file.write_text("base: {steps: 10, lr: 0.001}\nvariants: {uniform: {}, ds: {filter: dynamic}}\n"
                         "seeds: [0, 1, 2]\nparallel: 2\n")
    args = build_parser().parse_args(["compare", "--config", str(spec_file), "--steps", "3", "--variant",
                                      "mopps:selector=mopps", "--out-dir", str(tmp_path / "o")])
    spec = spec_from_args(args)
    assert spec["base"] == {"steps": "3", "lr": 0.001}
    assert list(spec["variants"]) == ["uniform", "ds", "mopps"] and spec["seeds"] == [0, 1, 2]
    assert spec["parallel"] == 2 and spec["out_dir"] == str(tmp_path / "o")
    with pytest.raises(ValueError, match="--seeds"):
        spec_from_args(build_parser().parse_args(["compare", "--seed", "1", "--variant", "a:"]))


def test_a_preset_is_the_base_that_the_config_and_flags_override(tmp_path):
    from rollwise.config.presets import preset_values

    scratchpad = preset_values("scratchpad")
    args = build_parser().parse_args(["compare", "--preset", "scratchpad", "--steps", "3", "--variant", "u:"])
    spec = spec_from_args(args)
    assert spec["base"] == {**scratchpad, "steps": "3"}
    spec_file = tmp_path / "cmp.yaml"
    spec_file.write_text("preset: scratchpad\nbase: {lr: 0.5}\nvariants: {u: {}}\n")
    spec = spec_from_args(build_parser().parse_args(["compare", "--config", str(spec_file)]))
    assert spec["base"] == {**scratchpad, "lr": 0.5}
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        spec_from_args(build_parser().parse_args(["compare", "--preset", "nope"]))


@pytest.mark.slow
def test_real_tiny_comparison(tmp_path):
    base = dict(steps=2, tiny_layers=1, tiny_hidden=32, tiny_heads=2, warmup_steps=0, warmup_items=200,
                train_size=40, eval_size=12, batch_prompts=4, samples_per_prompt=4, eval_every=1, eval_samples=2,
                probe_every=0, verify_workers=1, cache_dir=str(tmp_path / "cache"), checkpoint_every=1)
    summary = run_compare(base, {"uniform": {}, "mopps": {"selector": "mopps"}}, [0], str(tmp_path / "cmp"),
                          log=lambda m: None)
    for name, selector in (("uniform", "uniform"), ("mopps", "mopps")):
        run = summary["variants"][name]["runs"][0]
        assert run["final_step"] == 2 and run["total_rollouts"] == 32 and run["final_acc"] is not None
        assert f"selector: {selector}" in (tmp_path / "cmp" / name / "seed-0" / "config.yaml").read_text()
        assert (tmp_path / "cmp" / name / "seed-0" / "summary.json").is_file()  # a real run, launched and finished
    assert (tmp_path / "cmp" / "report.html").stat().st_size > 10_000
