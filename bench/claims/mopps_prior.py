"""MoPPS with a prior from the initial policy (METHODS.md section 2, "Prior knowledge").

Without a prior MoPPS spends its first steps on an uninformed Beta(1, 1) everywhere. The published
recipe measures base-model pass rates once and starts from a = 3 s + 1, b = 3 f + 1. Here an
offline-filter run with zero training steps measures them (8 samples per prompt, counted below as
part of MoPPS's cost), and MoPPS starts from them. Compared with uniform and plain MoPPS from the
shared runs, three seeds each.

    .venv/bin/python -m bench.claims.mopps_prior [--seeds 0 1 2] [--parallel 2]

Writes bench/results/mopps_prior.json and the report in bench/results/mopps_prior/.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import device_override, mean_curve_cost, parse_args, run_variants, write_results
from rollwise.evidence.compare import run_compare


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    estimate = {"pass-rates": {"selector": "offline", "steps": 0}}
    run_compare(device_override(args), estimate, [0], args.runs_dir, parallel=1)
    prior_dir = Path(args.runs_dir) / "pass-rates" / "seed-0"
    prior_cost = json.loads((prior_dir / "summary.json").read_text())["total_rollouts"]
    variants = {"uniform": {}, "mopps": {"selector": "mopps"},
                "mopps-prior": {"selector": "mopps", "prior": str(prior_dir)}}
    summary = run_variants("mopps_prior", variants, args)
    cost = {k: {key: mean_curve_cost(summary, k, key) for key in ("steps", "rollouts")} for k in variants}
    with_prior = cost["mopps-prior"]["rollouts"]
    results = {
        "target": summary["target"], "seeds": args.seeds, "prior_rollouts": prior_cost,
        "cost_to_target": cost,
        "rollouts_to_target_incl_prior": None if with_prior is None else with_prior + prior_cost,
        "final_acc": {k: summary["variants"][k]["stats"]["final_acc"] for k in variants},
        "zero_var_ratio": {k: summary["variants"][k]["stats"]["zero_var_ratio"] for k in variants},
        "probe_spearman": {k: summary["variants"][k]["stats"].get("probe_spearman") for k in variants},
    }
    path = write_results("mopps_prior", results)
    print(f"target {summary['target']:.3f} (uniform's final accuracy); the prior cost {prior_cost:,} rollouts")
    for name in variants:
        final = results["final_acc"][name]
        print(f"  {name:12s} final {final['mean']:.3f} +- {final['se']:.3f}; to target: steps "
              f"{cost[name]['steps']}, rollouts {cost[name]['rollouts']}; zero-var "
              f"{results['zero_var_ratio'][name]['mean']:.1%}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
