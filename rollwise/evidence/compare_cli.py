"""`rollwise compare`: its command line (variants as NAME:key=value,..., or a spec file) on top of
`rollwise.evidence.compare.run_compare`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from rollwise.config import RunConfig, load_yaml
from rollwise.config import yamlfile
from rollwise.evidence import compare
from rollwise.evidence.compare import (SPEC_KEYS, PlannedRun, check_same_config, plan_runs, run_compare,
                                       run_status)
from rollwise.evidence.summary import format_tables

def parse_variant(text: str) -> tuple[str, dict]:
    """'mopps:selector=mopps,mopps_band=[0.2,0.8]' -> ('mopps', {...}); 'uniform:' -> ('uniform', {})."""
    name, sep, rest = text.partition(":")
    if not sep:
        raise ValueError(f"--variant {text!r}: expected NAME:KEY=VALUE,... (or NAME: for the base configuration)")
    overrides = {}
    for item in _split_top_level(rest):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--variant {text!r}: {item!r} is not KEY=VALUE")
        parsed = yamlfile.load(value, f"--variant {name.strip()}: {key.strip()}") if value.strip() else value
        overrides[key.strip().replace("-", "_")] = value if parsed is None else parsed
    return name.strip(), overrides


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and braces, so list and dict values keep theirs."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    return [item for item in (i.strip() for i in items) if item]


def add_parser(subparsers) -> None:
    from rollwise.cli import add_config_flags, add_preset_flag

    usage = ("rollwise compare [--preset NAME] [--config FILE] [--variant NAME:KEY=VALUE,...]... [--seeds N [N ...]] "
             "[--parallel K] [--target ACC] [--metric M] [--dry-run] [--out-dir OUT] [--FIELD VALUE ...]")
    p = subparsers.add_parser("compare", help="run variants x seeds side by side and summarise", usage=usage,
                              description=compare.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None,
                   help="YAML of base config keys, or a compare spec with base:, variants:, seeds: (target:, "
                        "parallel:, out_dir:, preset:); flags given here override it")
    add_preset_flag(p)
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="a variant: a name and its overrides of the base (repeat; the first is the baseline)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="run seeds [default: 0]")
    p.add_argument("--parallel", type=int, default=None, help="runs at once, each with threads=1 [default: 1]")
    p.add_argument("--target", type=float, default=None,
                   help="target held-out accuracy [default: the baseline's final accuracy, mean over seeds]")
    p.add_argument("--metric", default=None, choices=("eval_temp_acc", "eval_greedy_acc"),
                   help="held-out accuracy to compare [default: eval_temp_acc]")
    p.add_argument("--dry-run", action="store_true", help="list the runs and what is done, launch nothing")
    add_config_flags(p)
    for action in p._actions:  # two fields mean something else here
        if action.dest == "out_dir":
            action.help = "The comparison's directory: OUT/VARIANT/seed-N run dirs and the report. [default: runs/compare]"
        elif action.dest == "seed":
            action.help = "Not used by compare: give --seeds."
    p.set_defaults(func=_run_compare)


def spec_from_args(args: argparse.Namespace) -> dict:
    """The comparison the flags describe: the preset (--preset or the spec's preset:), then the --config file
    (spec or base config), then the flags; the base is saved resolved, so a rerun does not depend on the preset."""
    from rollwise.config.presets import preset_values

    loaded = load_yaml(args.config) if args.config else {}
    spec = dict(loaded) if "variants" in loaded else {"base": loaded}
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ValueError(f"{args.config}: unknown compare key(s) {', '.join(unknown)}; expected "
                         f"{', '.join(sorted(SPEC_KEYS))}")
    if getattr(args, "seed", None) is not None:
        raise ValueError("compare sets each run's seed: use --seeds 0 1 2 instead of --seed")
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
             if getattr(args, f.name, None) is not None and f.name != "out_dir"}
    variants = dict(spec.get("variants") or {})
    for text in args.variant:
        name, overrides = parse_variant(text)
        variants[name] = overrides
    preset = getattr(args, "preset", None) or spec.get("preset")
    base = {**(preset_values(preset) if preset else {}), **(spec.get("base") or {}), **flags}
    return {"base": base, "variants": variants,
            "seeds": args.seeds or spec.get("seeds") or [0],
            "out_dir": args.out_dir or spec.get("out_dir") or "runs/compare",
            "parallel": args.parallel or spec.get("parallel") or 1,
            "target": args.target if args.target is not None else spec.get("target"),
            "metric": args.metric or spec.get("metric") or "eval_temp_acc"}


def _dry_status(run: PlannedRun) -> str:
    status = run_status(run.run_dir)
    try:
        if status != "new":
            check_same_config(run)
    except ValueError:
        return "differs"  # the real command refuses this run directory
    return status


def _run_compare(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.dry_run:
        plan, _ = plan_runs(spec["base"], spec["variants"], spec["seeds"], Path(spec["out_dir"]), spec["parallel"])
        for run in plan:
            print(f"{_dry_status(run):7s} {run.name:30s} {run.run_dir}")
        return 0
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        summary = run_compare(spec["base"], spec["variants"], spec["seeds"], spec["out_dir"], spec["parallel"],
                              spec["target"], metric=spec["metric"], log=log)
    except KeyboardInterrupt:
        log("interrupted: started runs checkpointed; rerun the same command to finish the missing ones")
        return 130
    except RuntimeError as exc:
        log(f"rollwise compare: {exc}")
        return 1
    print(format_tables(summary))
    for line in summary.get("warnings", []):
        print(f"warning: {line}")
    print(f"report: {Path(spec['out_dir']) / 'report.md'}, {Path(spec['out_dir']) / 'report.html'}")
    return 0
