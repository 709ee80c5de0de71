"""Does the default run learn? `rollwise train` with no arguments, over three seeds.

Claims: held-out temperature-1 accuracy rises by at least 10 points over the starting policy (mean of
3 seeds, with standard error); under uniform sampling at least 40% of groups have zero variance at the
start (the first 5 steps); one run, the warm-up of the built-in model included, takes about 10 minutes
or less on two cores. The default run starts from the warm-up shipped with the package
(rollwise.policy.shipped, the same weights on every machine), so a newcomer's first run has no warm-up:
`warmup_seconds` is 0 then, and `starting_policy` names the shipped weights and their hash. `--preset`
asks the same of a preset's run.

    .venv/bin/python -m bench.claims.default_learning [--seeds 0 1 2] [--parallel 2]

Its runs are `uniform` (PRESET-uniform with --preset), shared with the other benches. Writes
bench/results/default_learning[-PRESET].json and the report in bench/results/default_learning[-PRESET]/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.common import claim_name, parse_args, preset_variants, run_dirs, run_variants, write_results
from bench.stats import mean_se
from rollwise.policy import shipped
from rollwise.config import RunConfig
from rollwise.policy.models import prepare_policy
from rollwise.track import read_metrics

START_STEPS = 5  # "at the start": the mean over the first steps, before RL has moved anything


def starting_policy(model_dir: str) -> dict:
    """Where the runs' starting policy came from: the shipped warm-up (no warm-up to pay) or a cached one."""
    info = json.loads((Path(model_dir) / "rollwise.json").read_text())["warmup"]
    is_shipped = Path(model_dir).resolve().parent == shipped.SHIPPED_DIR
    return {"shipped": is_shipped, "name": Path(model_dir).name,
            "sha256": shipped.sha256(Path(model_dir) / shipped.WEIGHTS), "warmup_best_step": info["best_step"],
            "warmup_greedy_acc": info["best_greedy_acc"], "warmup_seconds": 0.0 if is_shipped else info["seconds"]}


def main() -> None:
    args = parse_args(__doc__)
    variants = preset_variants({"uniform": {}}, args.preset, args.steps)
    claim = claim_name("default_learning", args.preset)
    model_dir = prepare_policy(RunConfig.from_dict(next(iter(variants.values()))))  # built once (cached)
    summary = run_variants(claim, variants, args)
    rows = [read_metrics(path / "metrics.jsonl") for path in next(iter(run_dirs(variants, args).values()))]
    evals = [[r for r in run if r.get("eval_temp_acc") is not None] for run in rows]
    initial = np.array([e[0]["eval_temp_acc"] for e in evals])
    final = np.array([e[-1]["eval_temp_acc"] for e in evals])
    run_wall = np.array([run[-1]["wall_seconds"] for run in rows])
    policy = starting_policy(model_dir)
    warm = policy["warmup_seconds"]
    results = {
        "seeds": args.seeds, "preset": args.preset, "starting_policy": policy, "steps": rows[0][-1]["step"],
        "initial_temp_acc": mean_se(initial), "final_temp_acc": mean_se(final),
        "gain_points": mean_se(100 * (final - initial)),
        "eval_se_per_run": float(np.mean([e[-1]["eval_temp_se"] for e in evals])),
        "zero_var_ratio_at_start": mean_se([np.mean([r["zero_var_ratio"] for r in run[1:1 + START_STEPS]])
                                            for run in rows]),
        "warmup_seconds": warm,
        "run_wall_seconds": mean_se(run_wall),
        "first_run_minutes_incl_warmup": float((warm + run_wall.mean()) / 60),
        "parallel_runs": args.parallel,
        "target_source": summary.get("target_source"),
    }
    results["claims"] = {"gain_at_least_10_points": results["gain_points"]["mean"] >= 10,
                         "zero_var_at_least_40pct": results["zero_var_ratio_at_start"]["mean"] >= 0.40,
                         "about_10_minutes": results["first_run_minutes_incl_warmup"] <= 10.5}
    path = write_results(claim, results)
    g, z = results["gain_points"], results["zero_var_ratio_at_start"]
    print(f"default run, {len(args.seeds)} seeds, {results['steps']} steps: held-out temp-1 accuracy "
          f"{results['initial_temp_acc']['mean']:.3f} -> {results['final_temp_acc']['mean']:.3f}, "
          f"gain {g['mean']:+.1f} +- {g['se']:.1f} points (per seed {', '.join(f'{x:+.1f}' for x in g['per_seed'])})")
    print(f"zero-variance groups over the first {START_STEPS} steps (uniform): {z['mean']:.1%}")
    print(f"warm-up {warm:.0f} s + run {results['run_wall_seconds']['mean']:.0f} s = "
          f"{results['first_run_minutes_incl_warmup']:.1f} min ({args.parallel} runs at once)")
    print(f"claims: {results['claims']}; written to {path}")


if __name__ == "__main__":
    main()
