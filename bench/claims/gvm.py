"""GVM against a fixed number of samples per prompt, at equal rollouts and equal optimiser updates per step.

docs/methods.md section 3 (published: GVM reaches the baseline's accuracy in 2x fewer update steps at 8
samples per prompt). Pairs, each from the same initial policy, three seeds:
- RAFT++ vs GVM-RAFT++ (the published pairing), GRPO vs GVM-GRPO;
- GVM spends the same budget per step as its baseline (samples_per_prompt x prompts, its pre-samples
  included) and takes the same single optimiser step per batch, so steps, rollouts and updates are
  all equal per step (the published code took about 8x more updates per step under GVM).
The claim: the GVM variant reaches its baseline's final held-out accuracy in at most half the steps.

    .venv/bin/python -m bench.claims.gvm [--seeds 0 1 2] [--parallel 2] [--preset scratchpad]
                                  [--max-samples N] [--estimate-every K] [--pairs raft++ grpo] [--mopps]

`--max-samples N` caps GVM's main-rollout samples per prompt (gvm_max_samples; the published method has
an optional cap, the default run none): an ablation, its variants and results carry `-capN` in their
names. `--estimate-every K` reuses a prompt's p_i and G_i for K steps after it was last observed
(gvm_estimate_every; default 1, re-estimated at every visit): the paper amortises one estimation pass over
several steps. Uniform selection visits each prompt of the default pool (2,000 prompts, 64 a step) once an
epoch of about 31 steps, so revisits come 1-62 steps apart: with K = 64 only a prompt's first visit (and one
that was allocated no samples for K steps) is pre-sampled, and every later visit allocates the whole budget
from the estimate its previous visit left. Such steps (and every step with `--p-source posterior`) allocate
the whole budget under the cap, so a cap must exceed samples_per_prompt (the script refuses one that does
not: it would be a fixed allocation). Names carry `-everyK`. `--p-source predictor` is GVM on the run's
shared predictor (`--predictor`, irt by default): p_i = the predictor's Beta updated with the step's 4
pre-samples, never 0 from four failures, with the library's floor, minimum of 2 and cap of 2 x n
(names carry `-irt`). `--p-source posterior` measures rollwise's own
variant: p_i from the MoPPS posterior (no pre-samples, G_i from the prompt's previous visit), so both sides
of each pair select with MoPPS (`mopps-raft++` against `gvm-posterior-mopps-raft++`): the pair isolates the
allocation. `--mopps` selects with MoPPS on both sides with any p source: GVM composed with MoPPS, against
MoPPS alone.

Runs are named by the baseline (`raft++`, `mopps-raft++`) and GVM with its settings before it
(`gvm-cap12-raft++`); GRPO's pair is the default run's `uniform` and `gvm` (`mopps`, `mopps-gvm` with
MoPPS), the runs bench.claims.frontier and bench.claims.mopps_vs_uniform share (PRESET-... with --preset).
Writes bench/results/gvm[-PRESET][-mopps|-posterior][-capN][-everyK].json and the reports in
bench/results/gvm[-PRESET][-mopps|-posterior][-capN][-everyK]-*/.
"""

from __future__ import annotations

from bench.common import claim_name, load_variants, parse_args, preset_variants, run_name, run_variants, write_results
from bench.stats import cost_ratio, speedups_by_gain
from rollwise.config.presets import GVM, MOPPS  # the gvm preset: p and G from 4 pre-samples per prompt

PAIRS = {"raft++": {"algo": "raft++"}, "grpo": {"algo": "grpo"}}


def own_arguments(parser) -> None:
    parser.add_argument("--max-samples", type=int, default=0,
                        help="cap on GVM's main-rollout samples per prompt (0: none, the default run's setting)")
    parser.add_argument("--estimate-every", type=int, default=1,
                        help="steps a prompt's GVM estimate is reused after its last observation (1: re-estimated at "
                             "every visit, the default run's setting)")
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS), help="which pairs to run")
    parser.add_argument("--p-source", choices=("presample", "posterior", "predictor"), default="presample",
                        help="where GVM's p_i comes from: 4 pre-samples per prompt (published), the MoPPS "
                             "posterior (rollwise's variant; both sides of the pair then select with MoPPS), or the "
                             "run's predictor (--predictor, default irt) updated with this step's 4 pre-samples")
    parser.add_argument("--predictor", default="irt", help="the run's predictor with --p-source predictor [irt]")
    parser.add_argument("--mopps", action="store_true",
                        help="select with MoPPS on both sides of each pair (implied by --p-source posterior)")


def gvm_settings(args) -> tuple[dict, str]:
    """GVM's configuration keys for this invocation and the suffix its results and variant names carry."""
    posterior = args.p_source == "posterior"
    _check_cap_leaves_room(args)
    gvm = dict(GVM)
    if args.max_samples:
        gvm["gvm_max_samples"] = args.max_samples
    if args.estimate_every != 1:
        gvm["gvm_estimate_every"] = args.estimate_every
    if posterior:
        gvm = {key: value for key, value in gvm.items() if key != "gvm_presamples"} | {"gvm_p_source": "posterior"}
    if args.p_source == "predictor":
        gvm |= {"gvm_p_source": "predictor", "predictor": args.predictor}
    source = {"posterior": "-posterior", "predictor": f"-{getattr(args, 'predictor', '')}"}.get(args.p_source, "")
    cap = f"-cap{args.max_samples}" if args.max_samples else ""
    every = f"-every{args.estimate_every}" if args.estimate_every != 1 else ""
    return gvm, source + cap + every


def _check_cap_leaves_room(args) -> None:
    """A step without pre-samples (estimates reused, or p from the posterior) allocates the whole budget
    (samples_per_prompt x B) under the cap: a cap at or below samples_per_prompt then gives every prompt
    exactly samples_per_prompt, a fixed allocation under GVM's name."""
    without_presamples = args.estimate_every != 1 or args.p_source == "posterior"
    if not without_presamples or not args.max_samples:
        return
    from rollwise.config import RunConfig
    from rollwise.config.presets import preset_values

    per_prompt = RunConfig.from_dict(preset_values(args.preset) if args.preset else {}).samples_per_prompt
    if args.max_samples <= per_prompt:
        raise SystemExit(f"--max-samples {args.max_samples} with --estimate-every {args.estimate_every} and "
                         f"--p-source {args.p_source}: steps without pre-samples allocate all {per_prompt} samples "
                         f"per prompt under a cap of {args.max_samples}, which leaves GVM nothing to move; use a cap "
                         f"above {per_prompt}")


def pair_variants(args, pair: str, gvm: dict, methods: str) -> dict[str, dict]:
    """The baseline and its GVM variant, named by the runs' naming rule (the grpo pair's runs are other
    benches' `uniform` and `gvm`, or `mopps` and `mopps-gvm`), before any preset prefix."""
    mopps = args.mopps or args.p_source == "posterior"
    base = {**MOPPS, **PAIRS[pair]} if mopps else PAIRS[pair]
    base_name = f"mopps-{pair}" if mopps else pair
    return {run_name(base_name): base, run_name(f"gvm{methods}-{base_name}"): {**base, **gvm}}


def main() -> None:
    args = parse_args(__doc__, own_arguments)
    gvm, methods = gvm_settings(args)
    # results name the selection too (variant names carry it in their baseline's name, mopps-PAIR)
    selection = "-mopps" if args.mopps and args.p_source != "posterior" else ""
    claim = claim_name("gvm", args.preset) + selection + methods
    results = {"seeds": args.seeds, "preset": args.preset, "device": args.device, "gvm_settings": gvm, "pairs": {}}
    for pair in args.pairs:
        variants = preset_variants(pair_variants(args, pair, gvm, methods), args.preset, args.steps)
        names = list(variants)
        # the baseline's final accuracy (mean over seeds) is the target both are measured against
        summary = run_variants(f"{claim}-{pair}", variants, args)
        costs = {n: summary["variants"][n]["to_target"]["mean_curve"] for n in names}
        steps_base, steps_gvm = costs[names[0]].get("steps"), costs[names[1]].get("steps")
        speedup = cost_ratio(steps_base, steps_gvm)
        results["pairs"][pair] = {
            "target": summary["target"], "steps_to_target": {names[0]: steps_base, names[1]: steps_gvm},
            "speedup_steps": speedup, "rollouts_to_target": {n: costs[n].get("rollouts") for n in names},
            "seconds_to_target": {n: costs[n].get("seconds") for n in names},
            "final_acc": {n: summary["variants"][n]["stats"]["final_acc"] for n in names},
            "claim_half_the_steps": bool(speedup and speedup >= 2.0),
            "speedup_steps_by_gain": speedups_by_gain(summary, load_variants(variants, args), *names)}
        print(f"{pair}: target {summary['target']:.3f}; steps {steps_base} vs GVM {steps_gvm}"
              + (f" -> {speedup:.2f}x" if speedup is not None else " (no ratio: GVM never reached it, or at step 0)")
              + f"; to fractions of the baseline's gain: {results['pairs'][pair]['speedup_steps_by_gain']}")
    path = write_results(claim, results)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
