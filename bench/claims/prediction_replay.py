"""Offline: do the predictors that share evidence across prompts know a run better than MoPPS's own?

Replays the outcome logs of the uniform GRPO runs (three seeds per preset; a uniform run draws its
prompts at random, so its log is an unbiased sample) through the per-prompt Beta posterior (`beta`,
MoPPS's), `drift` and `irt` (docs/prediction.md). The claim: the best sharing predictor beats the
per-prompt posterior on Spearman and on zero-variance AUC in every phase of the run (first 10% of
steps, middle, last 10%), and on prompts never seen before (where the per-prompt posterior knows
nothing: its AUC there is 0.5). Also reported: the share of mixed groups each selection rule would
have had choosing a quarter of each step's logged groups.

    .venv/bin/python -m bench.claims.prediction_replay [--seeds 0 1 2] [--preset scratchpad]

Reads (and never trains) the runs `uniform` (PRESET-uniform with --preset) in --runs-dir; runs that do
not exist yet are skipped and named. Writes bench/results/prediction_replay[-PRESET].json.
"""

from __future__ import annotations

from pathlib import Path

from bench.common import claim_name, parse_args, run_name, write_results
from rollwise.predict.replay import PHASES, load_run
from rollwise.predict.replay_cli import run_replays

PREDICTORS = (("beta", {}), ("drift", {}), ("irt", {}))
RULES = (("uniform", {}), ("topb", {}), ("mixed", {}), ("greso", {}))
MEASURES = ("spearman_ties_broken", "zero_var_auc")  # ties broken: identical histories do not count as a ranking


def main() -> None:
    args = parse_args(__doc__, shared=("seeds", "runs_dir", "preset", "results_dir"))
    runs = [Path(args.runs_dir) / run_name("uniform", args.preset) / f"seed-{s}" for s in args.seeds]
    present = [r for r in runs if (r / "outcomes.jsonl").is_file()]
    missing = [str(r) for r in runs if r not in present]
    if not present:
        raise SystemExit(f"no outcome logs in {', '.join(missing)}: run the uniform baseline first "
                         "(python -m bench.claims.default_learning, or bench.claims.testbed for the scratchpad)")
    report = run_replays([load_run(r) for r in present], PREDICTORS, RULES)["json"]
    results = {"runs": [str(r) for r in present], "missing_runs": missing, "preset": args.preset,
               "measures": MEASURES, "predictors": {k: v["mean"] for k, v in report["predictors"].items()}}
    results["claims"] = claims(results["predictors"])
    path = write_results(claim_name("prediction_replay", args.preset), results)
    print_summary(results, path)


def beats(sharing: dict, beta: dict, phase: str, subset: str, measure: str) -> bool:
    """The sharing predictor's figure is above the per-prompt posterior's (an absent one counts as 0.5,
    no information: the posterior has none on prompts it never saw)."""
    mine = sharing[phase][subset][measure]
    theirs = beta[phase][subset][measure]
    return mine is not None and mine > (0.5 if theirs is None and measure == "zero_var_auc" else (theirs or 0.0))


def claims(predictors: dict) -> dict:
    """Per sharing predictor: beats beta on each measure in every phase (all prompts) and on unseen prompts."""
    out = {}
    for name in ("drift", "irt"):
        every_phase = all(beats(predictors[name], predictors["beta"], phase, "all", m) for phase in PHASES
                          for m in MEASURES)
        unseen = all(beats(predictors[name], predictors["beta"], "overall", "unseen", m) for m in MEASURES)
        out[name] = {"beats_beta_every_phase": every_phase, "beats_beta_unseen": unseen}
    out["best_sharing_meets_both"] = any(v["beats_beta_every_phase"] and v["beats_beta_unseen"]
                                         for v in out.values() if isinstance(v, dict))
    return out


def print_summary(results: dict, path) -> None:
    print(f"replayed {len(results['runs'])} uniform run(s); missing: {results['missing_runs'] or 'none'}")
    for measure in MEASURES:
        print(f"{measure}:")
        for phase in PHASES:
            row = {name: results["predictors"][name][phase]["all"][measure] for name in results["predictors"]}
            print(f"  {phase:7s} " + "  ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in row.items()))
        unseen = {name: results["predictors"][name]["overall"]["unseen"][measure] for name in results["predictors"]}
        print("  unseen  " + "  ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in unseen.items()))
    shares = {name: results["predictors"][name]["overall"]["rules"] for name in results["predictors"]}
    print("mixed-group share of each rule choosing 1/4 of a step's logged groups:")
    for name, rules in shares.items():
        print(f"  {name:6s} " + "  ".join(f"{k} {v:.3f}" for k, v in rules.items() if v is not None))
    print(f"claims: {results['claims']}; written to {path}")


if __name__ == "__main__":
    main()
