"""Shared plumbing of the benchmark scripts: run variants of the default configuration over seeds with
`rollwise compare` (runs are reused across scripts: compare finishes only what is missing), then write
one claim's report and JSON results.

Every script measures ratios within one run of itself on this machine (costs to reach the same
held-out accuracy), never absolute timings against a threshold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rollwise.evidence.compare import run_compare
from rollwise.evidence.report import write_report
from rollwise.evidence.summary import load_run, summarize

RESULTS = Path("bench/results")
RUNS = RESULTS / "runs"  # every benchmark's training runs, OUT/VARIANT/seed-N


def parse_args(description: str, add_arguments=None) -> argparse.Namespace:
    """The options every benchmark shares; `add_arguments(parser)` adds a script's own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (one torch thread each)")
    parser.add_argument("--steps", type=int, default=None, help="override the default run's steps (quick checks)")
    parser.add_argument("--runs-dir", default=str(RUNS), help="where the training runs live (shared by benches)")
    parser.add_argument("--preset", default=None, help="a named preset as the base configuration (default: the "
                        "built-in default run); variant names get the preset as a prefix")
    parser.add_argument("--device", default="cpu", help="torch device of every run (cpu or cuda); seconds are "
                        "comparable only between runs on the same machine")
    parser.add_argument("--results-dir", default=None, help="write the JSON results and reports here instead of "
                        "bench/results (results of another machine)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    if args.results_dir:
        global RESULTS
        RESULTS = Path(args.results_dir)
    return args


def results_path(*parts: str) -> Path:
    """A path under the results folder (bench/results, or --results-dir: read at call time, after parse_args)."""
    return RESULTS.joinpath(*parts)


def preset_variants(variants: dict[str, dict], args) -> dict[str, dict]:
    """Variants on top of `--preset` (names prefixed with it, so that runs of different presets never mix)."""
    if not args.preset:
        return variants
    from rollwise.config.presets import preset_values

    base = preset_values(args.preset)
    # --steps must beat the preset's own steps, which the variant values would otherwise carry over the base
    steps = {} if args.steps is None else {"steps": args.steps}
    return {f"{args.preset}-{name}": {**base, **values, **steps} for name, values in variants.items()}


def device_override(args) -> dict:
    """The configuration every run gets from --device: nothing on cpu, the default, so that existing runs'
    specifications stay the same."""
    return {} if args.device == "cpu" else {"device": args.device}


def run_variants(claim: str, variants: dict[str, dict], args, target: float | None = None) -> dict:
    """Run (or finish) the variants, then write bench/results/CLAIM/{summary.json, report.*}."""
    base = {**({} if args.steps is None else {"steps": args.steps}), **device_override(args)}
    run_compare(base, variants, args.seeds, args.runs_dir, parallel=args.parallel)
    return write_report(results_path(claim), run_dirs(variants, args), target)


def cost_ratio(base, variant) -> float | None:
    """How many times less a variant spent than the base to reach a target (None: one never did, or at 0)."""
    return base / variant if base and variant else None


def run_dirs(variants, args) -> dict[str, list[Path]]:
    """Each variant's run directories, one per seed, in the shared runs directory."""
    return {name: [Path(args.runs_dir) / name / f"seed-{s}" for s in args.seeds] for name in variants}


def load_variants(variants, args) -> dict[str, list[dict]]:
    """The runs of each variant loaded for rollwise.evidence.summary.summarize (to recompute at other targets)."""
    return {name: [load_run(path) for path in paths] for name, paths in run_dirs(variants, args).items()}


def write_results(claim: str, results: dict) -> Path:
    path = RESULTS / f"{claim}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=float))
    return path


def mean_curve_cost(summary: dict, variant: str, key: str):
    """A variant's cost to reach the target on the mean curve over seeds (None: never reached)."""
    return summary["variants"][variant]["to_target"]["mean_curve"].get(key)


def at_gain_fractions(loaded: dict[str, list[dict]], final: float, metric: str, fractions) -> list[dict]:
    """Summaries (as `summarize` gives them, for `mean_curve_cost`) at targets part of the way from the
    baseline's start (mean step-0 `metric` of the first variant's runs) to `final`: a speed-up depends on
    how far along its target is, and at the baseline's own final accuracy it is knife-edge when a variant
    ends level with it."""
    baseline = loaded[next(iter(loaded))]
    initial = sum(run["rows"][0][metric] for run in baseline) / len(baseline)
    rows = []
    for fraction in fractions:
        target = initial + fraction * (final - initial)
        rows.append({"fraction": fraction, "target": target, "summary": summarize(loaded, target, metric)})
    return rows


# Speed-ups are also measured part of the way to the baseline's final accuracy: at the final itself the ratio
# is knife-edge (a variant that ends level with the baseline, 0.0005 below, counts as never reaching it), and a
# variant that ends level can still get there first.
GAIN_FRACTIONS = (0.5, 0.75)


def speedups_by_gain(summary: dict, loaded: dict, base: str, variant: str,
                     fractions=GAIN_FRACTIONS) -> dict[str, float | None]:
    """A variant's speed-up in steps over the base (mean curves) to targets a fraction of the way from the
    base's start to the summary's target, keyed by the fraction as a string (JSON keys)."""
    speedups = {}
    for row in at_gain_fractions(loaded, summary["target"], summary["metric"], fractions):
        steps_base, steps_variant = (mean_curve_cost(row["summary"], v, "steps") for v in (base, variant))
        speedups[str(row["fraction"])] = cost_ratio(steps_base, steps_variant)
    return speedups
