"""The benchmark scripts' own logic: bench.claims.frontier's subset runs (--only: which variants run, which claims
can be judged), bench.claims.rpo's cut ablation (--cut); the shared --device and --results-dir options."""

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
               "mopps": {"steps_speedup": 1.7, "rollouts_vs_dynamic": 0.4}, "composed_seconds_speedup": None}
    assert claims(results) == {"composed_3x_faster_in_seconds": None, "mopps_1.6x_fewer_steps": True,
                                     "mopps_at_most_25pct_of_dynamic_rollouts": False}


def test_composed_claim_needs_the_speedup_and_uniforms_accuracy():
    final = {"uniform": _acc(0.3), "mopps-gvm-rpo": _acc(0.29)}
    def composed_claim(speedup):
        return claims({"final_acc": final, "mopps": None, "composed_seconds_speedup": speedup})[
            "composed_3x_faster_in_seconds"]

    assert composed_claim(4.0) is False
    final["mopps-gvm-rpo"] = _acc(0.31)
    assert composed_claim(4.0) is True
    assert composed_claim(None) is False
    assert claims({"final_acc": {"uniform": _acc(0.3)}, "mopps": {"steps_speedup": None, "rollouts_vs_dynamic": None},
                   "composed_seconds_speedup": None})["mopps_1.6x_fewer_steps"] is False


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
    from bench.common import at_gain_fractions, speedups_by_gain
    from rollwise.evidence.summary import load_run
    from tests.test_report import write_run

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
