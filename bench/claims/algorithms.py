"""Every algorithm on the same task and initial policy: does each raise held-out accuracy in the default budget?

GRPO, RAFT, RAFT++, Reinforce++ and PPO (METHODS.md section 5), each with the default run's budget
(or `--preset`'s), three seeds, one optimiser step per batch. The claim (rollwise issue 11) is that
every algorithm raises held-out temperature-1 accuracy within the budget; the figures go to the
README next to each other.

    .venv/bin/python -m bench.claims.algorithms [--seeds 0 1 2] [--parallel 2] [--preset scratchpad]

Writes bench/results/algorithms[-PRESET].json and the report in bench/results/algorithms[-PRESET]/.
"""

from __future__ import annotations

from bench.common import load_variants, parse_args, preset_variants, run_variants, write_results
from rollwise.rollout.evaluate import standard_error

ALGOS = ("grpo", "raft", "raft++", "reinforce++", "ppo")


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    variants = preset_variants({algo: {"algo": algo} for algo in ALGOS}, args)
    claim = "algorithms" + (f"-{args.preset}" if args.preset else "")
    summary = run_variants(claim, variants, args)
    gains = {}
    for name, runs in load_variants(variants, args).items():
        per_seed = [_gain(run["rows"], summary["metric"]) for run in runs]
        gains[name] = {"mean": sum(per_seed) / len(per_seed), "se": standard_error(per_seed), "per_seed": per_seed,
                       "final_acc": summary["variants"][name]["stats"]["final_acc"]}
    results = {"seeds": args.seeds, "preset": args.preset, "metric": summary["metric"], "gain": gains,
               "claims": {"every_algorithm_learns": all(g["mean"] > 2 * g["se"] and g["mean"] > 0
                                                        for g in gains.values())}}
    path = write_results(claim, results)
    for name, g in gains.items():
        print(f"{name:>24}: held-out gain {g['mean']:+.3f} +- {g['se']:.3f} (seeds {[round(x, 3) for x in g['per_seed']]})")
    print(f"claims: {results['claims']}; written to {path}")


def _gain(rows: list[dict], metric: str) -> float:
    evals = [r for r in rows if metric in r]
    return evals[-1][metric] - evals[0][metric]


if __name__ == "__main__":
    main()
