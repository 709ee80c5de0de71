"""MoPPS against DAPO dynamic sampling, in miniature (docs/methods.md sections 1-2; published: MoPPS needs
21.5-25% of dynamic sampling's rollouts for the same accuracy).

Dynamic sampling pays for every group it throws away; MoPPS predicts which prompts would be thrown
away and never rolls them out. The target is the held-out accuracy dynamic sampling reaches at the
end of the default budget (mean over seeds); the cost is training rollouts (discards included).
When MoPPS does not reach that accuracy within the budget, the script also reports the ratio at the
highest accuracy both reach (the lower of the two final accuracies), so the rollout saving is
still measured rather than left blank.

    .venv/bin/python -m bench.claims.mopps_vs_dynamic [--seeds 0 1 2] [--parallel 2] [--preset NAME]

Its runs are `dynamic` and `mopps` (PRESET-... with --preset), shared with other benches. Writes
bench/results/mopps_vs_dynamic[-PRESET].json and the report in bench/results/mopps_vs_dynamic[-PRESET]/.
"""

from __future__ import annotations

from bench.common import claim_name, load_variants, named_variants, parse_args, run_variants, write_results
from bench.stats import cost_ratio, mean_curve_cost
from rollwise.evidence.summary import summarize

VARIANTS = {"dynamic": {"filter": "dynamic"}, "mopps": {"selector": "mopps"}}


def main() -> None:
    args = parse_args(__doc__)
    variants, name = named_variants(VARIANTS, args)
    claim = claim_name("mopps_vs_dynamic", args.preset)
    summary = run_variants(claim, variants, args)
    cost = {k: {key: mean_curve_cost(summary, name[k], key) for key in ("steps", "rollouts", "tokens", "seconds")}
            for k in VARIANTS}
    ratio = cost_ratio(cost["mopps"]["rollouts"], cost["dynamic"]["rollouts"])
    results = {
        "target": summary["target"], "seeds": args.seeds, "preset": args.preset, "cost_to_target": cost,
        "rollout_ratio_mopps_over_dynamic": ratio,
        "final_acc": {k: summary["variants"][name[k]]["stats"]["final_acc"] for k in VARIANTS},
        "total_rollouts": {k: summary["variants"][name[k]]["stats"]["total_rollouts"] for k in VARIANTS},
    }
    results["common_target"] = common_target_ratio(summary, load_variants(variants, args), name)
    results["claims"] = {"mopps_at_most_25pct_of_ds_rollouts": bool(ratio is not None and ratio <= 0.25)}
    path = write_results(claim, results)
    if ratio is None:
        print(f"target {summary['target']:.3f}: not reached by both (costs {cost})")
    else:
        print(f"target {summary['target']:.3f} (dynamic sampling's final accuracy): rollouts dynamic "
              f"{cost['dynamic']['rollouts']:,}, mopps {cost['mopps']['rollouts']:,} -> mopps needs {ratio:.1%}")
    common = results["common_target"]
    print(f"at the highest accuracy both reach ({common['target']:.3f}): rollouts dynamic {common['dynamic']}, "
          f"mopps {common['mopps']} -> mopps needs {common['ratio']:.1%}" if common["ratio"] else
          f"no common target reached by both: {common}")
    print(f"claims: {results['claims']}; written to {path}")


def common_target_ratio(summary: dict, loaded: dict, name: dict) -> dict:
    """Rollouts to the lower of the two final accuracies (mean curves), MoPPS over dynamic sampling."""
    target = min(summary["variants"][name[k]]["stats"]["final_acc"]["mean"] for k in VARIANTS)
    common = summarize(loaded, target)
    cost = {k: mean_curve_cost(common, name[k], "rollouts") for k in VARIANTS}
    return {"target": target, **cost, "ratio": common["variants"][name["mopps"]]["ratios"]["rollouts"]}


if __name__ == "__main__":
    main()
