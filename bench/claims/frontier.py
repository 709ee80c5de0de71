"""The efficiency frontier: MoPPS, GVM and RPO alone and composed, against uniform GRPO.

Eight variants on the scratchpad preset (`--preset` to change it), each from the same initial policy,
three seeds: uniform GRPO; MoPPS; dynamic sampling; GVM; RPO; MoPPS + GVM; MoPPS + RPO;
MoPPS + GVM + RPO. For each: held-out accuracy against steps, rollouts, generated tokens and
seconds (the report's four-panel figure), and its cost to reach uniform's final accuracy (mean over
seeds). Claims measured:
- composed: MoPPS + GVM + RPO reaches uniform's final accuracy at least 3x faster in training
  seconds (rollwise's own claim, no published anchor), and, with the repaired components on the shared
  predictor (`irt-gvm-rpo`: Top-B on irt, GVM with p from it, RPO with the whole-path refresh), with at
  least 2x fewer generated tokens and 1.5x fewer training seconds;
- the repaired components alone: RPO with the whole-path refresh (`rpo`) within 2 points of uniform's
  final accuracy at <= x0.5 generated tokens per rollout (against the published refresh, `rpo-suffix`;
  `rpo-cut-whole` also cuts anywhere on the path, not only in its second half, and has the same claim);
  prefix hints (`hints`) at least 1.3x fewer steps than uniform to its final accuracy; MoPPS's rule on
  the shared predictor (`mopps-irt`);
- MoPPS (published 1.6-1.8x): at least 1.6x fewer steps than uniform to uniform's final accuracy;
- MoPPS (published 21.5-25%): at most 25% of dynamic sampling's rollouts to the highest accuracy both
  reach (the lower of the two final accuracies, mean over seeds);
- MoPPS's prediction quality: Spearman of its predicted against observed success rates on the
  unbiased probe (mean over the second half of the run).

    .venv/bin/python -m bench.claims.frontier [--seeds 0 1 2] [--parallel 2] [--preset scratchpad] [--only V ...]

`--preset ''` runs the variants on the built-in default run instead of the scratchpad preset (its uniform
runs are bench.claims.prediction's). `--only VARIANT ...` runs and reports a subset (uniform always); the claims whose variants did not run
are null, and the results go to frontier-PRESET-partial.json. Its runs are PRESET-VARIANT
(`scratchpad-uniform`, `scratchpad-mopps`, ...), shared with bench.claims.testbed, rpo and gvm. Writes
bench/results/frontier-PRESET.json and the report (with the figure) in bench/results/frontier-PRESET/.
"""

from __future__ import annotations

from bench.common import claim_name, load_variants, named_variants, parse_args, run_variants, write_results
from bench.stats import cost_ratio, mean_curve_cost, mean_se
from rollwise.evidence.summary import summarize
from rollwise.config.presets import GVM, MOPPS, RPO  # the method presets (rollwise presets)

IRT = {"predictor": "irt"}  # the shared predictor every method below reads (docs/prediction.md)
GVM_ON_PREDICTOR = {**GVM, "gvm_p_source": "predictor"}
VARIANTS = {
    "uniform": {},
    "mopps": MOPPS,
    "dynamic": {"filter": "dynamic"},
    "gvm": GVM,
    "rpo": RPO,  # the whole-path refresh, rollwise's default (docs/rpo.md)
    "rpo-suffix": {**RPO, "rpo_refresh": "suffix"},  # the published refresh
    "rpo-cut-whole": {**RPO, "rpo_cut": "whole"},  # whole refresh, cuts anywhere on the path (not only its second half)
    "mopps-gvm": {**MOPPS, **GVM},
    "mopps-rpo": {**MOPPS, **RPO},
    "mopps-gvm-rpo": {**MOPPS, **GVM, **RPO},
    # the repaired components on the shared predictor
    "mopps-irt": {**MOPPS, **IRT},
    "hints": {"rpo_hints": True, **IRT},
    "irt-gvm-rpo": {**MOPPS, **IRT, **GVM_ON_PREDICTOR, **RPO},
}
# The composition the composed claims read: the repaired one when it ran, else the original.
COMPOSED = ("irt-gvm-rpo", "mopps-gvm-rpo")
COSTS = ("steps", "rollouts", "tokens", "seconds")


def main() -> None:
    args = parse_args(__doc__, _add_only)
    chosen = only_variants(args.only)
    variants, name = named_variants(chosen, args)
    claim = claim_name("frontier", args.preset) + ("" if len(chosen) == len(VARIANTS) else "-partial")
    # seed by seed, the variants of a seed side by side: a cut-off bench leaves comparable seeds behind
    summary = run_variants(claim, variants, args, seed_by_seed=True)  # target: uniform's final accuracy
    loaded = load_variants(variants, args)
    results = {"seeds": args.seeds, "preset": args.preset, "device": args.device, "variants": chosen,
               "target": summary["target"],
               "not_run": sorted(set(VARIANTS) - set(chosen)),
               "costs_to_target": {short: {c: mean_curve_cost(summary, name[short], c) for c in COSTS}
                                   for short in chosen},
               "ratios_to_uniform": {short: summary["variants"][name[short]]["ratios"] for short in chosen},
               "final_acc": {short: summary["variants"][name[short]]["stats"]["final_acc"] for short in chosen},
               "mopps": mopps_claims(summary, loaded, name) if {"mopps", "dynamic"} <= set(chosen) else None}
    composed = next((v for v in COMPOSED if v in chosen), None)
    results["composed"] = composed
    results["composed_seconds_speedup"] = (speedup(results["costs_to_target"], "uniform", composed, "seconds")
                                           if composed else None)
    results["composed_tokens_speedup"] = (speedup(results["costs_to_target"], "uniform", composed, "tokens")
                                          if composed else None)
    results["tokens_per_rollout"] = {short: tokens_per_rollout(loaded[name[short]]) for short in chosen}
    results["claims"] = claims(results)
    path = write_results(claim, results)
    print_summary(results)
    print(f"written to {path} and {path.parent / claim}/report.md")


def _add_only(parser) -> None:
    parser.set_defaults(preset="scratchpad")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=None,
                        help="run and report these variants only (uniform is always included); the claims "
                             "whose variants are missing are reported as null, and the results go to "
                             "frontier-PRESET-partial.json")


def only_variants(only: list[str] | None) -> dict[str, dict]:
    """The variants to run: all of them, or uniform (the target's owner) and the ones asked for."""
    if not only:
        return dict(VARIANTS)
    return {short: values for short, values in VARIANTS.items() if short == "uniform" or short in only}


def claims(results: dict) -> dict:
    """Each claim true or false where its variants ran, None where they did not."""
    final, mopps, composed = results["final_acc"], results["mopps"], results["composed"]
    seconds, tokens = results["composed_seconds_speedup"], results["composed_tokens_speedup"]
    out = {"composed_3x_faster_in_seconds": None, "composed_2x_fewer_tokens_1.5x_fewer_seconds": None,
           "mopps_1.6x_fewer_steps": None, "mopps_at_most_25pct_of_dynamic_rollouts": None,
           "rpo_within_2_points_at_half_tokens": None, "rpo_cut_whole_within_2_points_at_half_tokens": None,
           "hints_1.3x_fewer_steps": None}
    per_rollout = results.get("tokens_per_rollout", {})
    for variant in ("rpo", "rpo-cut-whole"):
        if variant in final:
            out[f"{variant.replace('-', '_')}_within_2_points_at_half_tokens"] = bool(
                final[variant]["mean"] - final["uniform"]["mean"] >= -0.02
                and per_rollout[variant] <= 0.5 * per_rollout["uniform"])
    if "hints" in final:
        steps = speedup(results["costs_to_target"], "uniform", "hints", "steps")
        out["hints_1.3x_fewer_steps"] = bool(steps and steps >= 1.3)
    if composed:
        # a speed-up exists only when the variant reaches uniform's final accuracy; the 3x claim also asks for
        # equal or better final accuracy
        out["composed_3x_faster_in_seconds"] = bool(seconds and seconds >= 3.0
                                                    and final[composed]["mean"] >= final["uniform"]["mean"])
        out["composed_2x_fewer_tokens_1.5x_fewer_seconds"] = bool(seconds and tokens and seconds >= 1.5
                                                                  and tokens >= 2.0)
    if mopps is not None:
        out["mopps_1.6x_fewer_steps"] = bool(mopps["steps_speedup"] and mopps["steps_speedup"] >= 1.6)
        out["mopps_at_most_25pct_of_dynamic_rollouts"] = bool(mopps["rollouts_vs_dynamic"] is not None
                                                              and mopps["rollouts_vs_dynamic"] <= 0.25)
    return out


def tokens_per_rollout(runs: list[dict]) -> float:
    """Generated tokens per training rollout at the end of each run, mean over seeds (prefix tokens of RPO's
    cached paths are not generated and not counted)."""
    last = [next(r for r in reversed(run["rows"]) if "total_tokens" in r) for run in runs]
    return sum(r["total_tokens"] / r["total_rollouts"] for r in last) / len(last)


def speedup(costs: dict, base: str, variant: str, cost: str) -> float | None:
    """How many times less `cost` the variant spends than the base to reach the target (None: one never did)."""
    return cost_ratio(costs[base].get(cost), costs[variant].get(cost))


def mopps_claims(summary: dict, loaded: dict, name: dict) -> dict:
    """The published MoPPS claims on this preset: steps against uniform, rollouts against dynamic sampling
    to the highest accuracy both reach, and prediction quality on the probe."""
    mopps, dynamic = name["mopps"], name["dynamic"]
    steps = speedup({k: summary["variants"][name[k]]["to_target"]["mean_curve"] for k in ("uniform", "mopps")},
                    "uniform", "mopps", "steps")
    common = min(summary["variants"][n]["stats"]["final_acc"]["mean"] for n in (mopps, dynamic))
    both = summarize({n: loaded[n] for n in (dynamic, mopps)}, common)
    r_dyn, r_mopps = (mean_curve_cost(both, n, "rollouts") for n in (dynamic, mopps))
    spearman = []
    for run in loaded[mopps]:
        probes = [r["probe_spearman"] for r in run["rows"] if r.get("probe_spearman") is not None]
        if probes:
            late = probes[len(probes) // 2:]
            spearman.append(sum(late) / len(late))
    return {"steps_speedup": steps, "common_target": common,
            "rollouts_to_common": {"dynamic": r_dyn, "mopps": r_mopps},
            "rollouts_vs_dynamic": cost_ratio(r_mopps, r_dyn),
            "probe_spearman_late": mean_se(spearman) if spearman else None}


def _fmt(value, spec: str = ".2f") -> str:
    return "never" if value is None else format(value, spec)  # None: never reached (or one seed: no s.e.)


def print_summary(results: dict) -> None:
    print(f"target (uniform's final accuracy, mean over seeds): {results['target']:.3f}")
    print(f"{'variant':>14}  final acc        steps   rollouts    tokens   seconds  (x faster than uniform)")
    for short, costs in results["costs_to_target"].items():
        acc = results["final_acc"][short]
        ratios = " ".join(_fmt(speedup(results["costs_to_target"], "uniform", short, c)) for c in COSTS)
        print(f"{short:>14}  {_fmt(acc['mean'], '.3f')} +- {_fmt(acc['se'], '.3f'):5}  "
              + " ".join(f"{_fmt(costs[c], '.0f'):>9}" for c in COSTS) + f"  ({ratios})")
    m = results["mopps"]
    if results["not_run"]:
        print(f"not run (--only): {', '.join(results['not_run'])}")
    if m is not None:
        print(f"MoPPS: {_fmt(m['steps_speedup'])}x fewer steps than uniform (published 1.6-1.8x); "
              f"{_fmt(m['rollouts_vs_dynamic'], '.1%')} of dynamic sampling's rollouts to {m['common_target']:.3f} "
              f"(published 21.5-25%); probe Spearman (late) {m['probe_spearman_late']}")
    print("generated tokens per rollout: " + ", ".join(f"{k} {v:.2f}" for k, v in results["tokens_per_rollout"].items()))
    print(f"composed: {_fmt(results['composed_seconds_speedup'])}x faster in seconds (claim >= 3x); "
          f"claims: {results['claims']}")


if __name__ == "__main__":
    main()
