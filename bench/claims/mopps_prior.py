"""MoPPS with a prior from the initial policy (docs/methods.md section 2, "Prior knowledge").

Without a prior MoPPS spends its first steps on an uninformed Beta(1, 1) everywhere. The published
recipe measures base-model pass rates once and starts from a = 3 s + 1, b = 3 f + 1. Here an
offline-filter run with zero training steps measures them (8 samples per prompt, counted below as
part of MoPPS's cost), and MoPPS starts from them. Compared with uniform and plain MoPPS from the
shared runs, three seeds each: does the prior pay for its own rollouts? Reported (no pass/fail claim):
each variant's steps and rollouts to uniform's final accuracy, the prior's rollouts added to MoPPS's.

    .venv/bin/python -m bench.claims.mopps_prior [--seeds 0 1 2] [--parallel 2] [--preset NAME]

Its runs are `pass-rates` (seed 0 only), `uniform`, `mopps` and `mopps-prior` (PRESET-... with
--preset). Writes bench/results/mopps_prior[-PRESET].json and the report in
bench/results/mopps_prior[-PRESET]/.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import (claim_name, named_variants, parse_args, preset_variants,
                          run_runs, run_variants, write_results)
from bench.stats import mean_curve_cost


def main() -> None:
    args = parse_args(__doc__)
    claim = claim_name("mopps_prior", args.preset)
    estimate = preset_variants({"pass-rates": {"selector": "offline", "steps": 0}}, args.preset, args.steps)
    run_runs(estimate, args, seeds=[0], parallel=1)
    prior_dir = Path(args.runs_dir) / next(iter(estimate)) / "seed-0"
    prior_cost = json.loads((prior_dir / "summary.json").read_text())["total_rollouts"]
    shorts = {"uniform": {}, "mopps": {"selector": "mopps"},
              "mopps-prior": {"selector": "mopps", "prior": str(prior_dir)}}
    variants, name = named_variants(shorts, args)
    summary = run_variants(claim, variants, args)
    stats = {k: summary["variants"][name[k]]["stats"] for k in shorts}
    cost = {k: {key: mean_curve_cost(summary, name[k], key) for key in ("steps", "rollouts")} for k in shorts}
    with_prior = cost["mopps-prior"]["rollouts"]
    results = {
        "target": summary["target"], "seeds": args.seeds, "preset": args.preset, "prior_rollouts": prior_cost,
        "cost_to_target": cost,
        "rollouts_to_target_incl_prior": None if with_prior is None else with_prior + prior_cost,
        "final_acc": {k: stats[k]["final_acc"] for k in shorts},
        "zero_var_ratio": {k: stats[k]["zero_var_ratio"] for k in shorts},
        "probe_spearman": {k: stats[k].get("probe_spearman") for k in shorts},
    }
    path = write_results(claim, results)
    print(f"target {summary['target']:.3f} (uniform's final accuracy); the prior cost {prior_cost:,} rollouts")
    for k in shorts:
        final = results["final_acc"][k]
        print(f"  {k:12s} final {final['mean']:.3f} +- {final['se']:.3f}; to target: steps "
              f"{cost[k]['steps']}, rollouts {cost[k]['rollouts']}; zero-var "
              f"{results['zero_var_ratio'][k]['mean']:.1%}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
