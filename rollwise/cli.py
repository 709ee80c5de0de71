"""The `rollwise` command.

    rollwise train [--config run.yaml] [--FIELD VALUE ...] [--resume]
    rollwise verify ...        score answers through the verifier guard
    rollwise compare ...       run variants x seeds side by side and summarise
    rollwise report RUN_DIR... plots and tables for existing runs
    rollwise export-model M D  tiny, smollm2 or a .gguf file as a Hugging Face model directory
    rollwise replay RUN_DIR... score predictors and selection rules on recorded outcome logs
    rollwise convert-checkpoint RUN_DIR   old pickle checkpoints to the safe format
    rollwise tasks             list the reasoning-gym tasks
    rollwise presets           list the named presets (`train --preset NAME`)

Every `RunConfig` field is a flag of `train` (`--batch-prompts 32`, `--task-options '{...}'`), so the
command line, YAML files and the Python API build the same configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys

from rollwise.config import RunConfig
from rollwise.config.presets import PRESETS, describe_presets

# Each module registers one subcommand through `add_parser(subparsers)`.
SUBCOMMAND_MODULES = ("rollwise.verify.command", "rollwise.evidence.compare_cli", "rollwise.evidence.report",
                      "rollwise.policy.export_command", "rollwise.predict.replay_cli",
                      "rollwise.store.convert")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, defaulting to None so only given flags override; grouped by section."""
    from rollwise.config import SECTIONS

    groups = {name: parser.add_argument_group(f"{name}: {doc} (YAML: keys under `{name}:` or flat)")
              for name, doc in SECTIONS.items()}
    defaults = RunConfig()
    for f in dataclasses.fields(RunConfig):
        group = groups[f.metadata["section"]]
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        choices = f.metadata.get("choices")
        extra = f" One of: {', '.join(choices)}." if choices else ""
        group.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(),
                           help=f"{f.metadata['help']}{extra} [default: {default}]")


def add_preset_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=None, metavar="NAME[+NAME...]",
                   help="Start from a named preset (several joined by + apply in order); --config and flags override "
                        "it. "
                        + "; ".join(f"{name}: {preset.description}" for name, preset in PRESETS.items()) + ".")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
                 if getattr(args, f.name, None) is not None}
    return RunConfig.from_sources(args.config, overrides, preset=getattr(args, "preset", None))


def _add_train(subparsers) -> None:
    p = subparsers.add_parser("train", help="RL fine-tuning run (the built-in CPU default without arguments)",
                              description="Train a policy with verifiable rewards; writes OUT_DIR/metrics.jsonl, "
                                          "checkpoints and summary.json.")
    p.add_argument("--config", default=None, help="YAML file of config keys; flags given here override it.")
    add_preset_flag(p)
    p.add_argument("--resume", action="store_true",
                   help="Continue OUT_DIR from its last checkpoint (exactly as if never interrupted).")
    p.add_argument("--overwrite", action="store_true",
                   help="OUT_DIR holds an earlier run: move it aside to OUT_DIR.old-<time> (never deleted) and start anew.")
    add_config_flags(p)
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from rollwise.train import train

    cfg = config_from_args(args)
    summary = train(cfg, resume=args.resume, overwrite=args.overwrite)
    print(summary_line(summary))
    return 0


def summary_line(summary: dict) -> str:
    first, last = summary.get("initial_eval", {}), summary.get("final_eval", {})
    parts = [f"run: {summary.get('out_dir')}"]
    if first and last:
        parts.append(f"held-out temp-1 accuracy {first['eval_temp_acc']:.3f} -> {last['eval_temp_acc']:.3f} "
                     f"(+-{last['eval_temp_se']:.3f}), greedy {first['eval_greedy_acc']:.3f} -> {last['eval_greedy_acc']:.3f}")
    parts.append(f"rollouts {summary.get('total_rollouts')}, {summary.get('wall_seconds', 0):.0f} s")
    return "; ".join(parts)


def _add_presets(subparsers) -> None:
    p = subparsers.add_parser("presets", help="list the named presets usable as `train --preset NAME`")
    p.set_defaults(func=lambda args: print(describe_presets()))


def _add_tasks(subparsers) -> None:
    p = subparsers.add_parser("tasks", help="list reasoning-gym task names usable as --task")
    p.set_defaults(func=lambda args: _list_tasks())


def _list_tasks() -> int:
    import reasoning_gym

    for name in sorted(reasoning_gym.factory.DATASETS):
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollwise", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_parser(sub)
    _add_tasks(sub)
    _add_presets(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv or ["train"])
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Configuration and data errors: one clear line, no traceback.
        print(f"rollwise: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
