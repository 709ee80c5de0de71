"""MoPPS against uniform sampling, in miniature (METHODS.md section 2; published 1.6-1.8x faster).

Both variants start from the same built-in policy with the default budget, three seeds each. The
target is the held-out temperature-1 accuracy uniform reaches at the end (mean over seeds); the
claim is that MoPPS reaches it in at most 1/1.6 of uniform's steps, with a lower zero-variance
fraction throughout, and predicts difficulty (Spearman on the unbiased probe above 0.5 after its
posteriors have warmed up). A third variant, MoPPS with half the batch (32 prompts), asks the
question users pay for: can fewer, better-chosen rollouts reach the same accuracy?

    .venv/bin/python -m bench.claims.mopps_vs_uniform [--seeds 0 1 2] [--parallel 2]

Writes bench/results/mopps_vs_uniform.json and the report in bench/results/mopps_vs_uniform/.
"""

from __future__ import annotations

from bench.common import at_gain_fractions, load_variants, mean_curve_cost, parse_args, run_variants, write_results

VARIANTS = {"uniform": {}, "mopps": {"selector": "mopps"}, "mopps-b32": {"selector": "mopps", "batch_prompts": 32}}


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    summary = run_variants("mopps_vs_uniform", VARIANTS, args)
    u, m = summary["variants"]["uniform"], summary["variants"]["mopps"]
    steps_u, steps_m = mean_curve_cost(summary, "uniform", "steps"), mean_curve_cost(summary, "mopps", "steps")
    speedup = steps_u / steps_m if steps_u and steps_m else None
    results = {
        "target": summary["target"], "seeds": args.seeds,
        "steps_to_target": {"uniform": steps_u, "mopps": steps_m},
        "speedup_steps": speedup,
        "rollouts_to_target": {k: mean_curve_cost(summary, k, "rollouts") for k in VARIANTS},
        "seconds_to_target": {k: mean_curve_cost(summary, k, "seconds") for k in VARIANTS},
        "rollout_ratio_to_uniform": {k: summary["variants"][k]["ratios"].get("rollouts") for k in VARIANTS},
        "final_acc": {k: summary["variants"][k]["stats"]["final_acc"] for k in VARIANTS},
        "zero_var_ratio": {k: v["stats"]["zero_var_ratio"] for k, v in (("uniform", u), ("mopps", m))},
        "probe_spearman_after_first_quarter": m["stats"].get("probe_spearman"),
        "pred_spearman_after_first_quarter": m["stats"].get("pred_spearman"),
    }
    results["by_target"] = costs_by_target(summary, args)
    probe = (results["probe_spearman_after_first_quarter"] or {}).get("mean")
    results["claims"] = {
        "speedup_at_least_1.6x": bool(speedup and speedup >= 1.6),
        "lower_zero_var": results["zero_var_ratio"]["mopps"]["mean"] < results["zero_var_ratio"]["uniform"]["mean"],
        "probe_spearman_above_0.5": bool(probe is not None and probe > 0.5),
    }
    path = write_results("mopps_vs_uniform", results)
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


def costs_by_target(summary: dict, args, fractions=(0.5, 0.75, 0.9, 1.0)) -> list[dict]:
    """Steps and rollout ratios at targets part of the way from the start to uniform's final accuracy:
    the speed-up depends on how far along the target is, so one number hides the shape."""
    loaded = load_variants(VARIANTS, args)
    return [{"fraction": row["fraction"], "target": row["target"],
             "steps": {k: mean_curve_cost(row["summary"], k, "steps") for k in VARIANTS},
             "rollout_ratio": {k: _round(row["summary"]["variants"][k]["ratios"]["rollouts"]) for k in VARIANTS}}
            for row in at_gain_fractions(loaded, summary["target"], summary["metric"], fractions)]


def _round(value):
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    main()
