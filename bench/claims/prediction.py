"""Online: prompt selection on the shared predictor against uniform, MoPPS, its peers and dynamic sampling.

Every variant starts from the same built-in policy with the preset's budget, three seeds each:

    uniform      uniform GRPO (the baseline; its final held-out accuracy is the target)
    mopps        MoPPS: the per-prompt Beta posterior (`predictor: beta`) and Thompson Top-B
    mopps-irt    Thompson Top-B on the item-response predictor that shares evidence (docs/prediction.md)
    mixed-irt    prompts sampled by the chance their group comes out mixed, on the same predictor
    greso        GRESO-style skipping of prompts that stayed zero-variance
    speed        SPEED-style screening: a few samples for every prompt, the rest for the mixed ones
    dynamic      DAPO dynamic sampling (up to 4 generation batches a step: it pays for the groups it drops)

All but dynamic sampling spend uniform's rollouts per step. The claims, at uniform's rollout cost:
an effective (mixed) group share of at least 0.85; at least 1.6x fewer steps than uniform to uniform's
final held-out accuracy (mean curves over seeds); and, against dynamic sampling, at least half of its
gain over uniform in final accuracy at no more than 60% of its rollouts. The best of mopps-irt and
mixed-irt is named (by its final accuracy; both are reported), MoPPS's own figures beside it.

    .venv/bin/python -m bench.claims.prediction [--seeds 0 1 2] [--parallel 2] [--preset scratchpad]
                                                [--only mopps-irt ...]

Runs `VARIANT` (PRESET-VARIANT with --preset) in the shared runs folder; writes
bench/results/prediction[-PRESET].json and the report in bench/results/prediction[-PRESET]/.
"""

from __future__ import annotations

from bench.common import claim_name, named_variants, parse_args, run_variants, write_results
from bench.stats import cost_ratio, mean_curve_cost

VARIANTS = {
    "uniform": {},
    "mopps": {"selector": "mopps"},
    "mopps-irt": {"selector": "mopps", "predictor": "irt"},
    "mixed-irt": {"selector": "mixed", "predictor": "irt"},
    "greso": {"selector": "greso"},
    "speed": {"allocator": "speed"},
    "dynamic": {"filter": "dynamic", "ds_max_gen_batches": 4},
}
SHARING = ("mopps-irt", "mixed-irt")


def own_arguments(parser) -> None:
    parser.add_argument("--only", nargs="+", choices=[v for v in VARIANTS if v != "uniform"], default=None,
                        help="run and report these variants only (uniform always runs) [default: all]")


def main() -> None:
    args = parse_args(__doc__, own_arguments)
    chosen = {k: v for k, v in VARIANTS.items() if k == "uniform" or args.only is None or k in args.only}
    variants, name = named_variants(chosen, args)
    claim = claim_name("prediction", args.preset)
    summary = run_variants(claim, variants, args)
    results = {"target": summary["target"], "seeds": args.seeds, "preset": args.preset,
               "variants": {short: variant_figures(summary, name[short]) for short in chosen}}
    uniform_steps = results["variants"]["uniform"]["steps_to_target"]
    for figures in results["variants"].values():
        figures["speedup_steps"] = cost_ratio(uniform_steps, figures["steps_to_target"])
    results["claims"] = claims(results["variants"])
    path = write_results(claim, results)
    print_summary(results, path)


def variant_figures(summary: dict, run: str) -> dict:
    v = summary["variants"][run]
    stats = v["stats"]
    zero = stats["zero_var_ratio"]
    return {"final_acc": {**stats["final_acc"], "per_seed": [r["final_acc"] for r in v["runs"]]},
            "effective_share": {"mean": 1 - zero["mean"], "se": zero["se"],
                                "per_seed": [1 - r["zero_var_ratio"] for r in v["runs"]]},
            "rollouts": stats["total_rollouts"], "seconds": stats["seconds"],
            "steps_to_target": mean_curve_cost(summary, run, "steps"),
            "rollouts_to_target": mean_curve_cost(summary, run, "rollouts"),
            "seconds_to_target": mean_curve_cost(summary, run, "seconds")}


def claims(figures: dict) -> dict:
    """The claims for the best sharing variant that ran (by final accuracy), and MoPPS's for comparison."""
    ran = [k for k in SHARING if k in figures]
    if not ran:
        return {}
    best = max(ran, key=lambda k: figures[k]["final_acc"]["mean"])
    out = {"best_sharing": best, best: _claims_of(figures, best)}
    if "mopps" in figures:
        out["mopps"] = _claims_of(figures, "mopps")
    return out


def _claims_of(figures: dict, variant: str) -> dict:
    mine, uniform = figures[variant], figures["uniform"]
    out = {"effective_share_at_least_0.85": mine["effective_share"]["mean"] >= 0.85,
           "speedup_at_least_1.6x": bool(mine["speedup_steps"] and mine["speedup_steps"] >= 1.6)}
    if "dynamic" in figures:
        dynamic = figures["dynamic"]
        gain_dynamic = dynamic["final_acc"]["mean"] - uniform["final_acc"]["mean"]
        gain = mine["final_acc"]["mean"] - uniform["final_acc"]["mean"]
        rollouts = mine["rollouts"]["mean"] / dynamic["rollouts"]["mean"]
        out.update(gain_vs_dynamic=gain / gain_dynamic if gain_dynamic > 0 else None, rollouts_vs_dynamic=rollouts,
                   half_of_dynamic_gain_at_60pct_rollouts=bool(gain_dynamic > 0 and gain >= 0.5 * gain_dynamic
                                                               and rollouts <= 0.6))
    return out


def print_summary(results: dict, path) -> None:
    print(f"target {results['target']:.3f} (uniform's final held-out accuracy)")
    for short, f in results["variants"].items():
        acc, share = f["final_acc"], f["effective_share"]
        speed = f["speedup_steps"]
        print(f"  {short:10s} final {acc['mean']:.3f} +- {acc['se']:.3f}  effective share {share['mean']:.2f}  "
              f"rollouts {f['rollouts']['mean']:,.0f}  steps to target {f['steps_to_target']}"
              + (f" ({speed:.2f}x)" if speed else ""))
    print(f"claims: {results['claims']}; written to {path}")


if __name__ == "__main__":
    main()
