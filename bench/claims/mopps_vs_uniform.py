"""MoPPS against uniform sampling, in miniature (docs/methods.md section 2; published 1.6-1.8x faster).

Both variants start from the same built-in policy with the default budget, three seeds each. The
target is the held-out temperature-1 accuracy uniform reaches at the end (mean over seeds); the
claim is that MoPPS reaches it in at most 1/1.6 of uniform's steps, with a lower zero-variance
fraction throughout, and predicts difficulty (Spearman on the unbiased probe above 0.5 after its
posteriors have warmed up). A third variant, MoPPS with half the batch (32 prompts), asks the
question users pay for: can fewer, better-chosen rollouts reach the same accuracy?

    .venv/bin/python -m bench.claims.mopps_vs_uniform [--seeds 0 1 2] [--parallel 2] [--preset NAME]

Its runs are `uniform`, `mopps` and `mopps-b32` (PRESET-... with --preset), the first two shared with
other benches. Writes bench/results/mopps_vs_uniform[-PRESET].json and the report in
bench/results/mopps_vs_uniform[-PRESET]/.
"""

from __future__ import annotations

from bench.common import claim_name, load_variants, named_variants, parse_args, run_variants, write_results
from bench.stats import at_gain_fractions, cost_ratio, mean_curve_cost

VARIANTS = {"uniform": {}, "mopps": {"selector": "mopps"}, "mopps-b32": {"selector": "mopps", "batch_prompts": 32}}


def main() -> None:
    args = parse_args(__doc__)
    variants, name = named_variants(VARIANTS, args)
    claim = claim_name("mopps_vs_uniform", args.preset)
    summary = run_variants(claim, variants, args)
    stats = {short: summary["variants"][name[short]]["stats"] for short in VARIANTS}
    steps_u, steps_m = (mean_curve_cost(summary, name[k], "steps") for k in ("uniform", "mopps"))
    speedup = cost_ratio(steps_u, steps_m)
    results = {
        "target": summary["target"], "seeds": args.seeds, "preset": args.preset,
        "steps_to_target": {"uniform": steps_u, "mopps": steps_m},
        "speedup_steps": speedup,
        "rollouts_to_target": {k: mean_curve_cost(summary, name[k], "rollouts") for k in VARIANTS},
        "seconds_to_target": {k: mean_curve_cost(summary, name[k], "seconds") for k in VARIANTS},
        "rollout_ratio_to_uniform": {k: summary["variants"][name[k]]["ratios"].get("rollouts") for k in VARIANTS},
        "final_acc": {k: stats[k]["final_acc"] for k in VARIANTS},
        "zero_var_ratio": {k: stats[k]["zero_var_ratio"] for k in ("uniform", "mopps")},
        "probe_spearman_after_first_quarter": stats["mopps"].get("probe_spearman"),
        "pred_spearman_after_first_quarter": stats["mopps"].get("pred_spearman"),
    }
    results["by_target"] = costs_by_target(summary, load_variants(variants, args), name)
    probe = (results["probe_spearman_after_first_quarter"] or {}).get("mean")
    results["claims"] = {
        "speedup_at_least_1.6x": bool(speedup and speedup >= 1.6),
        "lower_zero_var": results["zero_var_ratio"]["mopps"]["mean"] < results["zero_var_ratio"]["uniform"]["mean"],
        "probe_spearman_above_0.5": bool(probe is not None and probe > 0.5),
    }
    path = write_results(claim, results)
    print(f"target {summary['target']:.3f} (uniform's final accuracy): steps uniform {steps_u}, mopps {steps_m}"
          f" -> speed-up {speedup:.2f}x" if speedup else f"target {summary['target']:.3f}: mopps steps {steps_m}")
    zu, zm = results["zero_var_ratio"]["uniform"]["mean"], results["zero_var_ratio"]["mopps"]["mean"]
    print(f"zero-variance groups: uniform {zu:.1%}, mopps {zm:.1%}; probe Spearman (mopps) "
          f"{probe if probe is None else round(probe, 3)}")
    half = results["rollout_ratio_to_uniform"]["mopps-b32"]
    print(f"rollouts to the target relative to uniform: mopps {results['rollout_ratio_to_uniform']['mopps']}, "
          f"mopps with B = 32 {half if half is None else round(half, 3)} (None: never reached)")
    for row in results["by_target"]:
        print(f"  target {row['target']:.3f} ({row['fraction']:.0%} of uniform's gain): steps "
              f"{row['steps']}, rollout ratios {row['rollout_ratio']}")
    print(f"claims: {results['claims']}; written to {path}")


def costs_by_target(summary: dict, loaded: dict, name: dict, fractions=(0.5, 0.75, 0.9, 1.0)) -> list[dict]:
    """Steps and rollout ratios at targets part of the way from the start to uniform's final accuracy:
    the speed-up depends on how far along the target is, so one number hides the shape."""
    return [{"fraction": row["fraction"], "target": row["target"],
             "steps": {k: mean_curve_cost(row["summary"], name[k], "steps") for k in VARIANTS},
             "rollout_ratio": {k: _round(row["summary"]["variants"][name[k]]["ratios"]["rollouts"]) for k in VARIANTS}}
            for row in at_gain_fractions(loaded, summary["target"], summary["metric"], fractions)]


def _round(value):
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    main()
