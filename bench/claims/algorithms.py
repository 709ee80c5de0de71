"""Every algorithm on the same task and initial policy: does each raise held-out accuracy in the default budget?

GRPO, RAFT, RAFT++, Reinforce++ and PPO (docs/methods.md section 5), each with the default run's budget
(or `--preset`'s), three seeds, one optimiser step per batch. The claim: every algorithm raises held-out
temperature-1 accuracy within the budget (mean gain above zero by more than two standard errors).

    .venv/bin/python -m bench.claims.algorithms [--seeds 0 1 2] [--parallel 2] [--preset scratchpad]

Its runs are named by algorithm (`raft`, `raft++`, `reinforce++`, `ppo`; PRESET-... with --preset), except
GRPO's, the default run's `uniform`, which other benches share. Writes bench/results/algorithms[-PRESET].json
(gains keyed by algorithm) and the report in bench/results/algorithms[-PRESET]/.
"""

from __future__ import annotations

from bench.common import claim_name, load_variants, named_variants, parse_args, run_variants, write_results
from bench.stats import mean_se

ALGOS = ("grpo", "raft", "raft++", "reinforce++", "ppo")


def main() -> None:
    args = parse_args(__doc__)
    shorts = {algo: {"algo": algo} for algo in ALGOS}
    variants, name = named_variants(shorts, args)
    claim = claim_name("algorithms", args.preset)
    summary = run_variants(claim, variants, args)
    loaded = load_variants(variants, args)
    gains = {algo: {**mean_se([_gain(run["rows"], summary["metric"]) for run in loaded[name[algo]]]),
                    "final_acc": summary["variants"][name[algo]]["stats"]["final_acc"]} for algo in ALGOS}
    results = {"seeds": args.seeds, "preset": args.preset, "metric": summary["metric"], "gain": gains,
               "claims": {"every_algorithm_learns": all(g["mean"] > 2 * g["se"] and g["mean"] > 0
                                                        for g in gains.values())}}
    path = write_results(claim, results)
    for algo, g in gains.items():
        print(f"{algo:>24}: held-out gain {g['mean']:+.3f} +- {g['se']:.3f} (seeds {[round(x, 3) for x in g['per_seed']]})")
    print(f"claims: {results['claims']}; written to {path}")


def _gain(rows: list[dict], metric: str) -> float:
    evals = [r for r in rows if metric in r]
    return evals[-1][metric] - evals[0][metric]


if __name__ == "__main__":
    main()
