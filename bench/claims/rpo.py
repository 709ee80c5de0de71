"""RPO partial rollouts against full-path GRPO: generated tokens, seconds per step, held-out accuracy.

docs/methods.md section 4. Three variants from the same initial policy (the preset's warmed-up tiny
model), three seeds, the preset's budget:
- uniform: full-path GRPO, the preset unchanged (`PRESET-uniform`, shared with bench.claims.testbed,
  frontier and gvm);
- rpo-partial: partial rollouts (half_min cuts, `limit` suffix budgets, up-front fill, refresh epsilon
  0.5) with the group length-aware reward (its default with partial rollouts);
- rpo-partial-nolen: the same without the length-aware reward.
Claims: at least 80% fewer generated tokens per rollout than full-path GRPO (published 95%), a shorter
wall-clock per step, final held-out accuracy within 2 points of full-path GRPO (published: without the
length-aware reward -0.3 to -2.0 points, with it +2.5 to +4.2).

    .venv/bin/python -m bench.claims.rpo [--seeds 0 1 2] [--parallel 3] [--preset scratchpad] [--steps N] [--cut L]

Runs go seed by seed, the variants of one seed side by side (compare's seed_by_seed): they share the
machine's load (a fair seconds-per-step ratio), and a bench cut short leaves whole seeds of every variant.

`--cut L` (an ablation of the cut rule, rpo_cut): one partial variant with a fixed L instead of
`half_min`, with the length-aware reward, named rpo-partial-cutL, against the same full-path runs;
results in rpo[-PRESET]-cutL.json.

`--steps N` stops each run at step N instead of changing its budget (compare's stop_at_step): the runs
keep the preset's configuration (its steps, 400 for scratchpad), everything up to step N is what an
N-step run does (constant learning rate, evaluation every 20 steps), and a later call with a larger N
(or none) resumes the same runs from their checkpoints. Figures are read from the rows up to step N.

Writes bench/results/rpo[-PRESET][-cutL].json (the compare report of the runs is in the runs folder).
Ratios are within this one run of the script (same machine, same load): generated tokens per rollout
over all training cost (the up-front fill included) and over the second half of the run; seconds per
step from the run's own timers (select + generate + verify + update, no evaluation).
"""

from __future__ import annotations

import math

import numpy as np

from rollwise.config import RunConfig
from bench.common import (claim_name, device_override, load_variants, parse_args, preset_variants, run_names,
                          write_results)
from bench.stats import cost_ratio, mean_se
from rollwise.evidence.compare import run_compare

# Up-front fill (booked as training cost: one whole completion per pool prompt, under 1% of the budget's
# rollouts at 400 steps): the uniform selector visits each prompt once per epoch (31 steps on the
# scratchpad pool), so a lazy fill would make the whole first epoch full-path, a third of a 100-step run.
FILL = {"rpo_fill": "upfront"}
# Full-path GRPO is the preset unchanged, `uniform` as in every bench, so that the benches share its runs.
VARIANTS = {"uniform": {},
            "rpo-partial": {"rollout": "partial", "rpo_length_reward": "auto", **FILL},
            "rpo-partial-nolen": {"rollout": "partial", "rpo_length_reward": "off", **FILL}}
PUBLISHED = {"generated_tokens_fewer": 0.95, "tokens_per_sample": "146 vs 2,690 at L = 300",
             "training_time": "-89% (1.5B), -72% (7B) at L = 800",
             "accuracy_points_without_length_reward": [-2.0, -0.3], "accuracy_points_with_length_reward": [2.5, 4.2]}


def main() -> None:
    args = parse_args(__doc__, _own_arguments)
    chosen = chosen_variants(args.cut)
    variants = preset_variants(chosen, args.preset)  # --steps is where the runs stop, not their budget
    names = run_names(chosen, args.preset)
    claim = claim_name("rpo", args.preset) + ("" if args.cut == "half_min" else f"-cut{args.cut}")
    run_compare(device_override(args), variants, args.seeds, args.runs_dir, parallel=args.parallel,
                seed_by_seed=True, stop_at_step=args.steps)
    metric = "eval_temp_acc"
    runs = load_variants(variants, args)
    last = args.steps if args.steps is not None else math.inf
    per_variant = {short: _measures([[r for r in run["rows"] if r["step"] <= last] for run in runs[name]], metric)
                   for short, name in names.items()}
    full = per_variant["uniform"]
    comparisons = {short: _against(full, per_variant[short]) for short in chosen if short != "uniform"}
    results = {"seeds": args.seeds, "preset": args.preset, "device": args.device, "steps": args.steps, "metric": metric,
               "variants": {names[k]: v for k, v in chosen.items()}, "measures": per_variant,
               "against_full": comparisons, "published": PUBLISHED,
               # a ratio is None only where a mean is zero: no claim then
               "claims": {short: {"tokens_80pc_fewer": (c["tokens_per_rollout_ratio"] or 1.0) <= 0.2,
                                  "shorter_step": (c["seconds_per_step_ratio"] or 1.0) < 1.0,
                                  "accuracy_within_2_points": c["final_acc_diff_points"] >= -2.0}
                          for short, c in comparisons.items()}}
    path = write_results(claim, results)
    _print(per_variant, comparisons, results["claims"], path)


def _own_arguments(parser) -> None:
    parser.add_argument("--cut", default="half_min", help="the cut rule L (rpo_cut): half_min (published, the "
                        "default) or a fixed L, an ablation run as one partial variant, rpo-partial-cutL")


def chosen_variants(cut: str) -> dict[str, dict]:
    """Full-path GRPO and the partial variants: the two of the published rule, or one with a fixed L.

    >>> list(chosen_variants("24")), chosen_variants("24")["rpo-partial-cut24"]["rpo_cut"]
    (['uniform', 'rpo-partial-cut24'], '24')
    """
    if cut == "half_min":
        return dict(VARIANTS)
    RunConfig(rollout="partial", rpo_cut=cut)  # the configuration's own check: a clear error for a bad rule
    return {"uniform": {}, f"rpo-partial-cut{cut}": {**VARIANTS["rpo-partial"], "rpo_cut": cut}}


def _measures(runs: list[list[dict]], metric: str) -> dict:
    """Per-seed figures of one variant, with their mean and standard error."""
    figures = {"tokens_per_rollout": [], "tokens_per_rollout_second_half": [], "seconds_per_step": [],
               "gen_seconds_per_step": [], "final_acc": [], "initial_acc": [], "cut_mean": [], "suffix_mean": [],
               "prefix_tokens_per_rollout": [], "cache_age_mean": [], "cache_mb": []}
    for rows in runs:
        steps = [r for r in rows if r["step"] > 0 and "rollouts" in r]
        half = steps[len(steps) // 2:]
        evals = [r for r in rows if metric in r]
        # every generated token booked as training cost (the up-front fill included) per training rollout
        figures["tokens_per_rollout"].append(steps[-1]["total_tokens"] / steps[-1]["total_rollouts"])
        figures["tokens_per_rollout_second_half"].append(_ratio(half, "tokens", "rollouts"))
        figures["prefix_tokens_per_rollout"].append(sum(r.get("rpo_prefix_tokens") or 0 for r in steps)
                                                    / max(sum(r["rollouts"] for r in steps), 1))
        figures["seconds_per_step"].append(float(np.mean([_step_seconds(r) for r in steps])))
        figures["gen_seconds_per_step"].append(float(np.mean([r.get("time_gen", 0.0) for r in steps])))
        figures["final_acc"].append(evals[-1][metric])
        figures["initial_acc"].append(evals[0][metric])
        for key, name in (("cut_mean", "rpo_cut_mean"), ("suffix_mean", "rpo_suffix_mean"),
                          ("cache_age_mean", "rpo_cache_age_mean")):
            values = [r[name] for r in half if r.get(name) is not None]
            figures[key].append(float(np.mean(values)) if values else None)
        figures["cache_mb"].append((steps[-1].get("rpo_cache_bytes") or 0) / 1e6)
    return {key: mean_se(values) for key, values in figures.items()}


def _against(full: dict, other: dict) -> dict:
    """Ratios of means (tokens, seconds) and the accuracy difference in points with its standard error."""
    diff = 100 * (other["final_acc"]["mean"] - full["final_acc"]["mean"])
    se = 100 * math.hypot(other["final_acc"]["se"], full["final_acc"]["se"])
    ratio = {key: cost_ratio(other[key]["mean"], full[key]["mean"])
             for key in ("tokens_per_rollout", "tokens_per_rollout_second_half", "seconds_per_step",
                         "gen_seconds_per_step")}
    return {"tokens_per_rollout_ratio": ratio["tokens_per_rollout"],
            "tokens_per_rollout_ratio_second_half": ratio["tokens_per_rollout_second_half"],
            "seconds_per_step_ratio": ratio["seconds_per_step"],
            "gen_seconds_per_step_ratio": ratio["gen_seconds_per_step"],
            "final_acc_diff_points": diff, "final_acc_diff_se_points": se}


def _ratio(rows: list[dict], num: str, den: str) -> float:
    return sum(r[num] for r in rows) / max(sum(r[den] for r in rows), 1)


def _step_seconds(row: dict) -> float:
    return sum(v for k, v in row.items() if k.startswith("time_") and isinstance(v, (int, float)))


def _print(per_variant: dict, comparisons: dict, claims: dict, path) -> None:
    for short, m in per_variant.items():
        print(f"{short:>18}: tokens/rollout {m['tokens_per_rollout']['mean']:.2f} (2nd half "
              f"{m['tokens_per_rollout_second_half']['mean']:.2f}), s/step {m['seconds_per_step']['mean']:.3f} "
              f"+- {m['seconds_per_step']['se']:.3f}, final acc {m['final_acc']['mean']:.4f} +- {m['final_acc']['se']:.4f}"
              f" (from {m['initial_acc']['mean']:.4f})")
    for short, c in comparisons.items():
        print(f"{short:>18} / full: tokens per rollout x{c['tokens_per_rollout_ratio']:.3f} (2nd half "
              f"x{c['tokens_per_rollout_ratio_second_half']:.3f}), seconds per step x{c['seconds_per_step_ratio']:.3f} "
              f"(generation x{c['gen_seconds_per_step_ratio']:.3f}), final accuracy {c['final_acc_diff_points']:+.2f} "
              f"+- {c['final_acc_diff_se_points']:.2f} points")
    print(f"claims: {claims}; written to {path}")


if __name__ == "__main__":
    main()
