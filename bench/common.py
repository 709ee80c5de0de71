"""Shared plumbing of the benchmark scripts: one command line (`parse_args`), one naming rule for the runs
(`run_name`), running variants over seeds with `rollwise compare`'s launcher in one shared runs folder
(`run_runs`, `run_variants`: compare finishes only what is missing, so benches share runs), and writing
one claim's JSON results (`write_results`). The statistics they report are in bench.stats.

Every script measures ratios within one run of itself on this machine (costs to reach the same
held-out accuracy), never absolute timings against a threshold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rollwise.evidence.compare import run_compare
from rollwise.evidence.report import write_report
from rollwise.evidence.summary import load_run

RESULTS = Path("bench/results")
RUNS = RESULTS / "runs"  # every benchmark's training runs, RUNS/RUN-NAME/seed-N

# The options every bench takes (a script that runs no training takes the ones that apply to it).
SHARED_OPTIONS = ("seeds", "parallel", "steps", "runs_dir", "preset", "device", "results_dir")
_OPTIONS = {
    "seeds": dict(type=int, nargs="+", default=[0, 1, 2], help="run seeds of every variant [default: 0 1 2]"),
    "parallel": dict(type=int, default=2, help="runs at once, one torch thread each [default: 2]"),
    "steps": dict(type=int, default=None, help="override the configuration's number of RL steps (quick checks)"),
    "runs_dir": dict(default=str(RUNS), help="where the training runs live, shared by the benches "
                     "[default: %(default)s]"),
    "preset": dict(default=None, help="a named preset as the base configuration (run names get it as a "
                   "prefix) [default: %(default)s; None is the built-in default run]"),
    "device": dict(default="cpu", help="torch device of every run (cpu or cuda); seconds compare only between "
                   "runs on the same machine [default: cpu]"),
    "results_dir": dict(default=None, help="write the JSON results and reports here instead of bench/results "
                        "(results of another machine)"),
}


def parse_args(doc: str, add_arguments=None, *, shared=SHARED_OPTIONS, fixed_preset: str | None = None,
               argv=None) -> argparse.Namespace:
    """The options every bench shares (`shared`: those that apply to the script), then the script's own
    (`add_arguments(parser)`); `doc`, the script's docstring, is its --help. `fixed_preset`: a bench about
    one preset, which --preset defaults to and may only name."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in shared:
        options = dict(_OPTIONS[name])
        if name == "preset" and fixed_preset:
            options.update(default=fixed_preset, choices=[fixed_preset],
                           help=f"the preset this bench is about [default: {fixed_preset}]")
        parser.add_argument("--" + name.replace("_", "-"), **options)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if getattr(args, "results_dir", None):
        global RESULTS
        RESULTS = Path(args.results_dir)
    return args


def results_path(*parts: str) -> Path:
    """A path under the results folder (bench/results, or --results-dir: read at call time, after parse_args)."""
    return RESULTS.joinpath(*parts)


def claim_name(claim: str, preset: str | None) -> str:
    """The name of a claim's results (CLAIM.json and the report in CLAIM/): the preset as a suffix."""
    return f"{claim}-{preset}" if preset else claim


# Configurations that more than one bench runs, under the one name all of them give it: GRPO is the default
# algorithm, the transformers engine the default engine, and `mopps` and `gvm` are the method presets, so a
# GRPO variant, or bench.costs.engines' hf one, is the default run (`uniform`).
SAME_RUN = {"grpo": "uniform", "engine-hf": "uniform", "gvm-grpo": "gvm", "mopps-grpo": "mopps",
            "gvm-mopps-grpo": "mopps-gvm"}


def run_name(variant: str, preset: str | None = None) -> str:
    """The naming rule of every bench's runs: the preset as a prefix (runs of different presets never mix),
    then the variant's name, one name per configuration (SAME_RUN), so that benches share their runs: the
    scratchpad preset unchanged is `scratchpad-uniform` in bench.claims.testbed, rpo, frontier and gvm.

    >>> run_name("uniform", "scratchpad"), run_name("grpo"), run_name("gvm-mopps-grpo", "scratchpad")
    ('scratchpad-uniform', 'uniform', 'scratchpad-mopps-gvm')
    """
    variant = SAME_RUN.get(variant, variant)
    return f"{preset}-{variant}" if preset else variant


def run_names(variants, preset: str | None) -> dict[str, str]:
    """Each variant's run name (`run_name`), keyed by the variant's own name (the key of its results)."""
    return {short: run_name(short, preset) for short in variants}


def preset_variants(variants: dict[str, dict], preset: str | None, steps: int | None = None) -> dict[str, dict]:
    """Variants on top of a preset (none: the built-in default run), keyed by their run names (`run_name`).
    `steps` (--steps) beats the preset's own steps, and a variant's own steps beat both."""
    from rollwise.config.presets import preset_values

    base = preset_values(preset) if preset else {}
    budget = {} if steps is None else {"steps": steps}
    return {run_name(name, preset): {**base, **budget, **values} for name, values in variants.items()}


def named_variants(variants: dict[str, dict], args) -> tuple[dict[str, dict], dict[str, str]]:
    """The variants on top of --preset with --steps, keyed by run name (`preset_variants`), and each one's
    run name keyed by its own name (`run_names`)."""
    return preset_variants(variants, args.preset, args.steps), run_names(variants, args.preset)


def device_override(args) -> dict:
    """The configuration every run gets from --device: nothing on cpu, the default (or for a script without
    --device), so that existing runs' specifications stay the same."""
    device = getattr(args, "device", "cpu")
    return {} if device == "cpu" else {"device": device}


def run_runs(variants: dict[str, dict], args, seeds=None, parallel=None, **compare_options) -> dict:
    """Run (or finish) the variants' runs in the shared runs folder with compare's launcher: --seeds (or
    `seeds`), --parallel (or `parallel`) at a time, --steps and --device in every run's configuration (a
    variant's own steps win). Returns compare's summary."""
    base = {**({} if args.steps is None else {"steps": args.steps}), **device_override(args)}
    return run_compare(base, variants, args.seeds if seeds is None else seeds, args.runs_dir,
                       parallel=args.parallel if parallel is None else parallel, **compare_options)


def run_variants(claim: str, variants: dict[str, dict], args, target: float | None = None, **compare_options) -> dict:
    """Run (or finish) the variants (`run_runs`, compare's options passed on), then write
    bench/results/CLAIM/{summary.json, report.*}."""
    run_runs(variants, args, **compare_options)
    return write_report(results_path(claim), run_dirs(variants, args), target)


def run_dirs(variants, args) -> dict[str, list[Path]]:
    """Each variant's run directories, one per seed, in the shared runs directory."""
    return {name: [Path(args.runs_dir) / name / f"seed-{s}" for s in args.seeds] for name in variants}


def load_variants(variants, args) -> dict[str, list[dict]]:
    """The runs of each variant loaded for rollwise.evidence.summary.summarize (to recompute at other targets)."""
    return {name: [load_run(path) for path in paths] for name, paths in run_dirs(variants, args).items()}


def write_results(claim: str, results: dict) -> Path:
    path = results_path(f"{claim}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=float))
    return path
