"""The benchmark scripts' own logic, without training: every script's --help through the one shared parser,
the shared statistics (bench.stats), one run name per configuration across the benches, bench.claims.rpo
through compare's launcher (a fake one records the planned runs), bench.claims.frontier's subset runs (--only:
which variants run, which claims can be judged), bench.claims.rpo's cut ablation (--cut), bench.claims.gvm's
settings and names, and the shared --device and --results-dir options."""

import json
import math
import re
import subprocess
import sys

import pytest

from bench.claims.frontier import VARIANTS, claims, only_variants
from bench.claims.rpo import VARIANTS as RPO_VARIANTS
from bench.claims.rpo import chosen_variants


def _acc(mean):
    return {"mean": mean, "se": 0.0}


def test_only_keeps_uniform_and_the_chosen_variants_in_order():
    assert list(only_variants(["dynamic", "mopps"])) == ["uniform", "mopps", "dynamic"]
    assert only_variants(None) == VARIANTS


def test_claims_of_missing_variants_are_null_not_false():
    results = {"final_acc": {"uniform": _acc(0.3), "mopps": _acc(0.32), "dynamic": _acc(0.31)},
               "mopps": {"steps_speedup": 1.7, "rollouts_vs_dynamic": 0.4}, "composed": None,
               "composed_seconds_speedup": None, "composed_tokens_speedup": None}
    assert claims(results) == {"composed_3x_faster_in_seconds": None, "composed_2x_fewer_tokens_1.5x_fewer_seconds": None,
                               "mopps_1.6x_fewer_steps": True, "mopps_at_most_25pct_of_dynamic_rollouts": False,
                               "rpo_within_2_points_at_half_tokens": None,
                               "rpo_cut_whole_within_2_points_at_half_tokens": None, "hints_1.3x_fewer_steps": None}


def test_rpo_claim_needs_both_the_accuracy_and_the_token_halving():
    def claim(rpo_acc, rpo_tokens):
        return claims({"final_acc": {"uniform": _acc(0.30), "rpo": _acc(rpo_acc)}, "mopps": None, "composed": None,
                       "composed_seconds_speedup": None, "composed_tokens_speedup": None,
                       "tokens_per_rollout": {"uniform": 16.0, "rpo": rpo_tokens}})["rpo_within_2_points_at_half_tokens"]

    assert claim(0.285, 8.0) is True
    assert claim(0.275, 8.0) is False and claim(0.30, 8.5) is False


def test_rpo_variants_and_the_composition_are_judged_together():
    """Each RPO variant has its own claim, and reading them leaves the composition's token speed-up alone."""
    final = {"uniform": _acc(0.30), "rpo": _acc(0.27), "rpo-cut-whole": _acc(0.29), "irt-gvm-rpo": _acc(0.31)}
    out = claims({"final_acc": final, "mopps": None, "composed": "irt-gvm-rpo", "composed_seconds_speedup": 1.6,
                  "composed_tokens_speedup": 2.5,
                  "tokens_per_rollout": {"uniform": 16.0, "rpo": 7.0, "rpo-cut-whole": 7.9, "irt-gvm-rpo": 5.0}})
    assert out["rpo_within_2_points_at_half_tokens"] is False
    assert out["rpo_cut_whole_within_2_points_at_half_tokens"] is True
    assert out["composed_2x_fewer_tokens_1.5x_fewer_seconds"] is True


def test_hints_claim_reads_the_steps_to_uniforms_final_accuracy():
    def claim(hint_steps):
        costs = {"uniform": {"steps": 300}, "hints": {"steps": hint_steps}}
        return claims({"final_acc": {"uniform": _acc(0.3), "hints": _acc(0.31)}, "mopps": None, "composed": None,
                       "composed_seconds_speedup": None, "composed_tokens_speedup": None,
                       "costs_to_target": costs})["hints_1.3x_fewer_steps"]

    assert claim(220) is True and claim(240) is False and claim(None) is False


def test_tokens_per_rollout_reads_the_last_cumulative_row_of_each_run():
    from bench.claims.frontier import tokens_per_rollout

    runs = [{"rows": [{"total_tokens": 10, "total_rollouts": 10}, {"total_tokens": 40, "total_rollouts": 20},
                      {"eval_temp_acc": 0.3}]},
            {"rows": [{"total_tokens": 60, "total_rollouts": 20}]}]
    assert tokens_per_rollout(runs) == 2.5


def test_composed_claim_needs_the_speedup_and_uniforms_accuracy():
    final = {"uniform": _acc(0.3), "mopps-gvm-rpo": _acc(0.29)}
    def composed_claim(speedup):
        return claims({"final_acc": final, "mopps": None, "composed": "mopps-gvm-rpo", "composed_seconds_speedup": speedup,
                       "composed_tokens_speedup": None})["composed_3x_faster_in_seconds"]

    assert composed_claim(4.0) is False
    final["mopps-gvm-rpo"] = _acc(0.31)
    assert composed_claim(4.0) is True
    assert composed_claim(None) is False
    assert claims({"final_acc": {"uniform": _acc(0.3)}, "mopps": {"steps_speedup": None, "rollouts_vs_dynamic": None},
                   "composed": None, "composed_seconds_speedup": None, "composed_tokens_speedup": None})[
        "mopps_1.6x_fewer_steps"] is False


def test_the_repaired_composition_needs_both_token_and_seconds_savings():
    final = {"uniform": _acc(0.3), "irt-gvm-rpo": _acc(0.3)}
    def claim(seconds, tokens):
        return claims({"final_acc": final, "mopps": None, "composed": "irt-gvm-rpo", "composed_seconds_speedup": seconds,
                       "composed_tokens_speedup": tokens})["composed_2x_fewer_tokens_1.5x_fewer_seconds"]

    assert claim(1.6, 2.1) is True
    assert claim(1.4, 2.1) is False and claim(1.6, 1.9) is False and claim(None, None) is False


def test_rpo_cut_ablation_is_one_partial_variant_against_the_shared_full_path_runs():
    assert chosen_variants("half_min") == RPO_VARIANTS
    ablation = chosen_variants("24")
    assert list(ablation) == ["uniform", "rpo-partial-cut24"] and ablation["uniform"] == {}
    assert ablation["rpo-partial-cut24"] == {**RPO_VARIANTS["rpo-partial"], "rpo_cut": "24"}
    with pytest.raises(ValueError, match="rpo_cut='-3'"):
        chosen_variants("-3")


def test_device_and_results_dir_reach_the_runs_and_the_written_results(tmp_path, monkeypatch):
    """--device goes into every run's configuration (left out on cpu, so existing runs keep their
    specification) and --results-dir moves what the scripts write (runs measured on another machine)."""
    import sys

    import bench.common as common

    monkeypatch.setattr(common, "RESULTS", common.RESULTS)  # parse_args rebinds it: restored after the test
    monkeypatch.setattr(sys, "argv", ["bench", "--device", "cuda", "--results-dir", str(tmp_path / "h100")])
    args = common.parse_args("test")
    assert common.results_path("x.json") == tmp_path / "h100" / "x.json"
    assert common.write_results("claim", {"a": 1}) == tmp_path / "h100" / "claim.json"

    seen = {}
    monkeypatch.setattr(common, "run_compare", lambda base, variants, *a, **k: seen.update(base=base))
    monkeypatch.setattr(common, "write_report", lambda *a: None)
    common.run_variants("claim", {"v": {}}, args)
    assert seen["base"] == {"device": "cuda"}
    args.device = "cpu"
    common.run_variants("claim", {"v": {}}, args)
    assert seen["base"] == {}


def test_gain_fraction_targets_run_from_the_baselines_start_to_its_final(tmp_path):
    """Targets part of the way from the baseline's step-0 accuracy to a final accuracy, each with the
    summary at that target: a variant level with the baseline at the end still shows its earlier lead."""
    from bench.stats import at_gain_fractions, speedups_by_gain
    from rollwise.evidence.summary import load_run
    from tests.support.reports import write_run

    base = [write_run(tmp_path / "base" / f"seed-{s}", [0.1, 0.2, 0.3, 0.4, 0.5], seed=s) for s in (0, 1)]
    fast = [write_run(tmp_path / "fast" / f"seed-{s}", [0.1, 0.4, 0.45, 0.48, 0.49], seed=s) for s in (0, 1)]
    loaded = {"base": [load_run(p) for p in base], "fast": [load_run(p) for p in fast]}
    rows = at_gain_fractions(loaded, 0.5, "eval_temp_acc", (0.5, 1.0))
    assert [round(r["target"], 6) for r in rows] == [0.3, 0.5]
    steps = [{name: r["summary"]["variants"][name]["to_target"]["mean_curve"]["steps"] for name in loaded}
             for r in rows]
    assert steps == [{"base": 20, "fast": 10}, {"base": 40, "fast": None}]
    summary = {"target": 0.5, "metric": "eval_temp_acc"}
    assert speedups_by_gain(summary, loaded, "base", "fast", (0.5, 1.0)) == {"0.5": 2.0, "1.0": None}


def test_gvm_bench_settings_name_every_ablation_they_set():
    """bench.claims.gvm's options become GVM configuration keys and the suffix of its variant and result names, so
    that an ablation's runs never share a directory with the published settings' runs."""
    from argparse import Namespace

    from bench.claims.gvm import gvm_settings
    from rollwise.config.presets import GVM

    def settings(**given):
        defaults = {"max_samples": 0, "estimate_every": 1, "p_source": "presample", "preset": None}
        return gvm_settings(Namespace(**(defaults | given)))

    assert settings() == (GVM, "")
    assert settings(max_samples=8)[1] == "-cap8"  # with pre-samples every step, a cap of 8 still reallocates
    gvm, suffix = settings(max_samples=12, estimate_every=64)
    assert gvm == {**GVM, "gvm_max_samples": 12, "gvm_estimate_every": 64} and suffix == "-cap12-every64"
    with pytest.raises(SystemExit, match="leaves GVM nothing to move"):  # 8 per prompt is the default run's
        settings(max_samples=8, estimate_every=64)
    gvm, suffix = settings(p_source="posterior")
    assert "gvm_presamples" not in gvm and gvm["gvm_p_source"] == "posterior" and suffix == "-posterior"
    with pytest.raises(SystemExit, match="leaves GVM nothing to move"):  # the posterior never pre-samples
        settings(p_source="posterior", max_samples=8)
    assert settings(p_source="posterior", max_samples=12)[1] == "-posterior-cap12"


def test_gvm_bench_pairs_share_the_runs_other_benches_name():
    """GRPO pairs are the default run (`uniform`) and MoPPS (`mopps`) that bench.claims.frontier and
    bench.claims.mopps_vs_uniform also run; --mopps selects with MoPPS on both sides of a pair."""
    from argparse import Namespace

    from bench.claims.gvm import pair_variants
    from rollwise.config.presets import GVM

    args = Namespace(mopps=False, p_source="presample")
    assert pair_variants(args, "grpo", GVM, "") == {"uniform": {"algo": "grpo"}, "gvm": {"algo": "grpo", **GVM}}
    args.mopps = True
    both = pair_variants(args, "grpo", GVM, "-cap12")
    assert both == {"mopps": {"selector": "mopps", "algo": "grpo"},
                    "gvm-cap12-mopps-grpo": {"selector": "mopps", "algo": "grpo", **GVM}}
    assert list(pair_variants(args, "grpo", GVM, "")) == ["mopps", "mopps-gvm"]  # bench.claims.frontier's names
    assert list(pair_variants(args, "raft++", GVM, "")) == ["mopps-raft++", "gvm-mopps-raft++"]


# ------------------------------------------------------------------------- one parser, one way to run them

SHARED = ("--seeds", "--parallel", "--steps", "--runs-dir", "--preset", "--device", "--results-dir")
SCRIPTS = {  # module -> the shared options it takes (the others say why not in their docstrings)
    **{f"bench.claims.{name}": SHARED for name in (
        "default_learning", "testbed", "mopps_vs_uniform", "mopps_vs_dynamic", "mopps_prior", "algorithms", "gvm",
        "rpo", "frontier", "real_model")},
    "bench.claims.pool_dependence": tuple(o for o in SHARED if o != "--preset"),  # builds its own pools
    "bench.costs.engines": ("--seeds", "--parallel", "--steps", "--runs-dir", "--results-dir"),
    "bench.costs.verify_cost": ("--results-dir",),
    "bench.costs.selector_cost": ("--results-dir",),
}
_HELP_DRIVER = """
import runpy, sys
for module in sys.argv[1:]:
    sys.argv = [module, "--help"]
    print("==== " + module, flush=True)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)  # what python -m MODULE does
        print("==== no exit", flush=True)
    except SystemExit as stop:
        print("==== exit " + str(stop.code), flush=True)
"""


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    """Every script's --help, each run as `python -m MODULE --help` would run it (runpy, as __main__), in one
    subprocess (one torch import for all of them)."""
    done = subprocess.run([sys.executable, "-c", _HELP_DRIVER, *SCRIPTS], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    parts = re.split(r"^==== (bench\.\S+)$", done.stdout, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_a_real_python_dash_m_help_works():
    done = subprocess.run([sys.executable, "-m", "bench.claims.rpo", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage:") and "--cut" in done.stdout


@pytest.mark.parametrize("module", list(SCRIPTS))
def test_every_script_takes_the_shared_options_through_one_parser(helps, module):
    text = helps[module]
    assert text.rstrip().endswith("==== exit 0"), text[-500:]
    options = set(re.findall(r"^  (--[a-z-]+)", text, flags=re.M))
    assert options & set(SHARED) == set(SCRIPTS[module])
    assert f"python -m {module}" in text  # the docstring, shown by --help, says how to run it
    assert not re.search(r"\bissue\b|METHODS\.md|CALIBRATION", text)  # nothing outside the repository


# ------------------------------------------------------------------------------------ shared statistics

def test_mean_se_is_the_mean_and_standard_error_of_the_values_present():
    from bench.stats import mean_se

    # 1, 2, 4: mean 7/3; sample variance ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = 7/3; s.e. sqrt(7/3 / 3) = sqrt(7) / 3
    stats = mean_se([1, None, 2, 4])
    assert stats["mean"] == pytest.approx(7 / 3) and stats["se"] == pytest.approx(math.sqrt(7) / 3)
    assert stats["per_seed"] == [1.0, None, 2.0, 4.0]
    assert mean_se([0.5]) == {"mean": 0.5, "se": 0.0, "per_seed": [0.5]}  # one seed: no spread
    assert mean_se([None, None]) == {"mean": None, "se": None, "per_seed": [None, None]}
    assert mean_se([3.0, 5.0], key="values") == {"mean": 4.0, "se": 1.0, "values": [3.0, 5.0]}


def test_cost_ratio_is_none_where_a_cost_is_missing_or_zero():
    from bench.stats import cost_ratio

    assert cost_ratio(300, 150) == 2.0 and cost_ratio(150, 300) == 0.5
    assert cost_ratio(None, 150) is None and cost_ratio(300, None) is None and cost_ratio(300, 0) is None


# --------------------------------------------------------------------------- one name per configuration

def test_one_run_name_per_configuration_across_the_benches():
    """Every bench names a configuration the same way (preset prefix + variant name), so that benches share
    runs: no name stands for two configurations, and no configuration has two names."""
    from argparse import Namespace

    from bench.claims import algorithms, frontier, gvm, mopps_vs_dynamic, mopps_vs_uniform, rpo, testbed
    from bench.common import preset_variants
    from rollwise.config import RunConfig
    from rollwise.config.presets import GVM

    named = [testbed.variants(400), preset_variants(frontier.VARIANTS, "scratchpad"),
             preset_variants(rpo.chosen_variants("half_min"), "scratchpad"),
             preset_variants(rpo.chosen_variants("24"), "scratchpad"),
             preset_variants({"uniform": {}}, None), preset_variants(mopps_vs_uniform.VARIANTS, None),
             preset_variants(mopps_vs_dynamic.VARIANTS, None),
             preset_variants({algo: {"algo": algo} for algo in algorithms.ALGOS}, None),
             preset_variants({"engine-hf": {"engine": "hf"}, "engine-vllm": {"engine": "vllm"}}, None)]
    for preset in (None, "scratchpad"):
        for mopps in (False, True):
            for pair in gvm.PAIRS:
                args = Namespace(mopps=mopps, p_source="presample")
                named.append(preset_variants(gvm.pair_variants(args, pair, GVM, ""), preset))
    config_of, name_of = {}, {}
    for variants in named:
        for name, values in variants.items():
            config = json.dumps(RunConfig.from_dict(values).to_dict(), sort_keys=True, default=str)
            assert config_of.setdefault(name, config) == config, f"{name} names two configurations"
            assert name_of.setdefault(config, name) == name, f"{name} and {name_of[config]}: one configuration"
    assert {"scratchpad-uniform", "scratchpad-dynamic-half", "uniform", "raft++", "mopps-gvm"} <= set(config_of)
    assert not {"grpo", "engine-hf", "testbed-uniform"} & set(config_of)


def test_variant_steps_beat_steps_which_beat_the_presets():
    from bench.claims.testbed import DYNAMIC, UNIFORM, variants
    from bench.common import preset_variants

    assert preset_variants({"uniform": {}}, "scratchpad")["scratchpad-uniform"]["steps"] == 400
    assert preset_variants({"uniform": {}}, "scratchpad", 50)["scratchpad-uniform"]["steps"] == 50
    assert preset_variants({"pass-rates": {"steps": 0}}, "scratchpad", 50)["scratchpad-pass-rates"]["steps"] == 0
    assert {name: values["steps"] for name, values in variants(100).items()} == {UNIFORM: 100, DYNAMIC: 50}


# ----------------------------------------------------------------------- bench.claims.rpo runs through compare

def test_rpo_runs_seed_by_seed_through_compares_launcher_and_stops_at_steps(tmp_path, monkeypatch):
    """bench.claims.rpo plans its runs with compare and launches them with compare's launcher (here a fake
    that records them and writes their metrics): the variants of a seed side by side before the next seed,
    the preset's budget unchanged, --steps handed to the launcher as the step to stop at."""
    import bench.common as common
    import rollwise.evidence.compare as compare
    import rollwise.policy.models as models
    from bench.claims import rpo

    launched = []

    def fake_launch(cfg, resume, stop_at_step=None):
        from pathlib import Path

        run_dir = Path(cfg.out_dir)
        launched.append((run_dir.parent.name, cfg.seed, cfg.steps, stop_at_step))
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.yaml")
        per_rollout = 4.0 if cfg.rollout == "partial" else 20.0
        rows = [{"step": s, "total_rollouts": 512 * s, "total_tokens": per_rollout * 512 * s, "seconds": float(s),
                 "wall_seconds": s + 0.1, "eval_temp_acc": 0.1 + 0.01 * s,
                 **({"rollouts": 512, "tokens": per_rollout * 512, "time_gen": per_rollout / 10, "time_update": 1.0}
                    if s else {})} for s in range(stop_at_step + 1)]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (run_dir / "summary.json").write_text(json.dumps({"interrupted": True}))  # stopped at the step
        return run_dir

    monkeypatch.setattr(compare, "launch_subprocess", fake_launch)
    monkeypatch.setattr(models, "prepare_policy", lambda cfg, log=None: None)
    monkeypatch.setattr(common, "RESULTS", common.RESULTS)  # parse_args rebinds it: restored after the test
    monkeypatch.setattr(sys, "argv", ["rpo", "--preset", "scratchpad", "--seeds", "0", "1", "--parallel", "3",
                                      "--steps", "3", "--runs-dir", str(tmp_path / "runs"),
                                      "--results-dir", str(tmp_path / "results")])
    rpo.main()
    names = ["scratchpad-uniform", "scratchpad-rpo-partial", "scratchpad-rpo-partial-nolen"]
    assert [seed for _, seed, _, _ in launched] == [0, 0, 0, 1, 1, 1]
    assert sorted(launched[:3]) == sorted((name, 0, 400, 3) for name in names)  # the preset's budget, stopped at 3
    results = json.loads((tmp_path / "results" / "rpo-scratchpad.json").read_text())
    assert list(results["variants"]) == names and results["steps"] == 3
    assert results["against_full"]["rpo-partial"]["tokens_per_rollout_ratio"] == pytest.approx(0.2)
    assert results["claims"]["rpo-partial"] == {"tokens_80pc_fewer": True, "shorter_step": True,
                                                "accuracy_within_2_points": True}
    launched.clear()
    rpo.main()  # every run is at step 3: nothing launched again
    assert launched == []
