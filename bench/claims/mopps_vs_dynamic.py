"""MoPPS against DAPO dynamic sampling, in miniature (METHODS.md sections 1-2; published: MoPPS needs
21.5-25% of dynamic sampling's rollouts for the same accuracy).

Dynamic sampling pays for every group it throws away; MoPPS predicts which prompts would be thrown
away and never rolls them out. The target is the held-out accuracy dynamic sampling reaches at the
end of the default budget (mean over seeds); the cost is training rollouts (discards included).
When MoPPS does not reach that accuracy within the budget, the script also reports the ratio at the
highest accuracy both reach (the lower of the two final accuracies), so the rollout saving is
still measured rather than left blank.

    .venv/bin/python -m bench.claims.mopps_vs_dynamic [--seeds 0 1 2] [--parallel 2]

Writes bench/results/mopps_vs_dynamic.json and the report in bench/results/mopps_vs_dynamic/.
"""

from __future__ import annotations

from bench.common import load_variants, mean_curve_cost, parse_args, run_variants, write_results
from rollwise.evidence.summary import summarize

VARIANTS = {"dynamic": {"filter": "dynamic"}, "mopps": {"selector": "mopps"}}


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    summary = run_variants("mopps_vs_dynamic", VARIANTS, args)
    cost = {name: {key: mean_curve_cost(summary, name, key) for key in ("steps", "rollouts", "tokens", "seconds")}
            for name in VARIANTS}
    ratio = (cost["mopps"]["rollouts"] / cost["dynamic"]["rollouts"]
             if cost["mopps"]["rollouts"] and cost["dynamic"]["rollouts"] else None)
    results = {
        "target": summary["target"], "seeds": args.seeds, "cost_to_target": cost,
        "rollout_ratio_mopps_over_dynamic": ratio,
        "final_acc": {k: summary["variants"][k]["stats"]["final_acc"] for k in VARIANTS},
        "total_rollouts": {k: summary["variants"][k]["stats"]["total_rollouts"] for k in VARIANTS},
    }
    results["common_target"] = common_target_ratio(summary, args)
    results["claims"] = {"mopps_at_most_25pct_of_ds_rollouts": bool(ratio is not None and ratio <= 0.25)}
    path = write_results("mopps_vs_dynamic", results)
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


def common_target_ratio(summary: dict, args) -> dict:
    """Rollouts to the lower of the two final accuracies (mean curves), MoPPS over dynamic sampling."""
    target = min(summary["variants"][k]["stats"]["final_acc"]["mean"] for k in VARIANTS)
    loaded = load_variants(VARIANTS, args)
    common = summarize(loaded, target)
    cost = {k: mean_curve_cost(common, k, "rollouts") for k in VARIANTS}
    return {"target": target, **cost, "ratio": common["variants"]["mopps"]["ratios"]["rollouts"]}


if __name__ == "__main__":
    main()
