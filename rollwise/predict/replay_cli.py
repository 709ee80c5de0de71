"""`rollwise replay RUN_DIR...`: score predictors and selection rules on recorded outcome logs, offline.

    rollwise replay runs/uniform-0 runs/uniform-1 --predictor beta --predictor irt:ability_step_var=0.02
    rollwise replay runs/a --rule topb --rule mixed:source=predictive --out replay/

A RUN_DIR holds outcomes.jsonl and either features.npz (written beside the log by the TRL / verl
plug-ins) or the run's config.yaml to rebuild its pool from. Prints a table per measure, averaged
over the runs, and writes replay.json (every figure, per run and averaged) and plots to --out. How to
read them: docs/prediction.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from rollwise.predict.registry import PREDICTORS, build_predictor, ngram_buckets_of
from rollwise.predict.replay import PHASES, Replayed, load_run, replay, summarize
from rollwise.predict.run_features import load_run_features
from rollwise.select.rules import RULES, build_rule

DEFAULT_PREDICTORS = ("beta", "drift", "irt")
DEFAULT_RULES = ("uniform", "topb", "band", "mixed", "mixed:source=predictive", "greso")


def parse_spec(spec: str) -> tuple[str, dict]:
    """`name` or `name:key=value,key=value` (values read as YAML scalars).

    >>> parse_spec("irt:ability_step_var=0.02,use_cells=false")
    ('irt', {'ability_step_var': 0.02, 'use_cells': False})
    """
    name, _, rest = spec.partition(":")
    settings = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{spec!r}: expected name:key=value,key=value")
        settings[key.strip()] = yaml.safe_load(value.strip())
    return name.strip(), settings


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("replay", help="score predictors and selection rules on recorded outcome logs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (or their outcomes.jsonl)")
    p.add_argument("--predictor", action="append", default=None, metavar="NAME[:KEY=VALUE,...]",
                   help=f"predictor to replay, repeatable; one of {', '.join(PREDICTORS)} "
                        f"[default: {' '.join(DEFAULT_PREDICTORS)}]")
    p.add_argument("--rule", action="append", default=None, metavar="NAME[:KEY=VALUE,...]",
                   help=f"selection rule to score, repeatable; one of {', '.join(RULES)} "
                        f"[default: {' '.join(DEFAULT_RULES)}]")
    p.add_argument("--rule-factor", type=int, default=4,
                   help="each rule chooses 1/c of every step's logged groups [default: 4]")
    p.add_argument("--repeats", type=int, default=4, help="random repetitions of each rule's choice [default: 4]")
    p.add_argument("--group-keys", default=None,
                   help="comma-separated metadata fields that define groups [default: the task's difficulty fields]")
    p.add_argument("--out", default="replay", help="directory for replay.json and the plots [default: ./replay]")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.set_defaults(func=_run_replay)


def _run_replay(args: argparse.Namespace) -> int:
    keys = None if args.group_keys is None else tuple(k for k in args.group_keys.split(",") if k)
    predictors = [parse_spec(s) for s in (args.predictor or DEFAULT_PREDICTORS)]
    rules = [parse_spec(s) for s in (args.rule or DEFAULT_RULES)]
    if args.rule_factor < 1 or args.repeats < 1:
        raise ValueError("--rule-factor and --repeats must be at least 1")
    logs = [load_run(path, keys) for path in args.runs]
    results = run_replays(logs, predictors, rules, args.rule_factor, args.repeats)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.json").write_text(json.dumps(results["json"], indent=1))
    print(format_tables(results["json"]))
    if not args.no_plots:
        from rollwise.predict.replay_plots import plot_replays

        plot_replays(results["replays"], out)
    print(f"written: {out / 'replay.json'}" + ("" if args.no_plots else f" and plots in {out}"))
    return 0


def run_replays(logs, predictors, rules, rule_factor: int = 4, repeats: int = 4) -> dict:
    """Replay every log through every predictor; per-run summaries and their mean, plus the raw replays."""
    report: dict = {"runs": [str(log.path) for log in logs], "predictors": {}}
    replays: dict[str, list[Replayed]] = {}
    with_ngrams: dict = {}  # (log index, buckets) -> features: each pool is rebuilt once, not once per predictor
    for name, settings in predictors:
        label = _label(name, settings)
        per_run, replays[label] = [], []
        for index, log in enumerate(logs):
            features = _features_for(log, index, ngram_buckets_of(name, settings), with_ngrams)
            predictor = build_predictor(name, settings, log.pool_size, features)
            factories = {_label(r, s): _rule_factory(r, s, log) for r, s in rules}
            rep = replay(log, predictor, factories, rule_factor, repeats)
            replays[label].append(rep)
            per_run.append(summarize(rep))
        report["predictors"][label] = {"mean": _mean_of(per_run), "per_run": per_run}
    return {"json": report, "replays": replays}


def _features_for(log, index: int, buckets: int, with_ngrams: dict):
    """The log's prompt features, rebuilt from its config.yaml (once per log) where `buckets` n-grams are needed."""
    if buckets in (0, log.features.ngram_buckets):
        return log.features
    if (index, buckets) not in with_ngrams:
        features = load_run_features(log.path.parent, log.features.keys, buckets)
        if features.pool_hash and log.features.pool_hash and features.pool_hash != log.features.pool_hash:
            raise ValueError(f"{log.path.parent}: the pool rebuilt for n-grams differs from the run's features")
        with_ngrams[index, buckets] = features
    return with_ngrams[index, buckets]


def _label(name: str, settings: dict) -> str:
    return name + (":" + ",".join(f"{k}={v}" for k, v in settings.items()) if settings else "")


def _rule_factory(name: str, settings: dict, log):
    build_rule(name, settings, log.pool_size, log.group_size())  # fail now, not mid-replay
    return lambda: build_rule(name, settings, log.pool_size, log.group_size())


def _mean_of(summaries: list):
    """Element-wise mean of nested summaries (None where any run has None; lists from the first run)."""
    first = summaries[0]
    if isinstance(first, dict):
        return {k: _mean_of([s[k] for s in summaries]) for k in first}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        values = [s for s in summaries if s is not None]
        return float(np.mean(values)) if len(values) == len(summaries) else None
    return first


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_tables(report: dict) -> str:
    """The prediction table and the rule table (means over runs) as text."""
    runs = len(report["runs"])
    lines = [f"prediction quality (mean of {runs} run{'s' * (runs > 1)}; seen = prompt observed before the step)",
             "rho: Spearman pooled over the phase; /st: mean per step; tb: prediction ties broken at random; "
             "sn / un: seen / never-seen prompts only; AUCzv: zero-variance groups by P(all equal)",
             f"{'predictor':28s} {'phase':7s} {'groups':>6s} {'rho':>6s} {'rho tb':>6s} {'rho/st':>6s} "
             f"{'tb/st':>6s} {'rho sn':>6s} {'rho un':>6s} {'MAE':>6s} {'Brier':>6s} {'ECE':>6s} {'AUCzv':>6s} "
             f"{'AUC sn':>6s} {'AUC un':>6s}"]
    for label, result in report["predictors"].items():
        for phase in PHASES + ("overall",):
            block = result["mean"][phase]
            a, s, u = block["all"], block["seen"], block["unseen"]
            lines.append(f"{label[:28]:28s} {phase:7s} {a['groups']:6.0f} {_fmt(a['spearman']):>6s} "
                         f"{_fmt(a['spearman_ties_broken']):>6s} {_fmt(a['spearman_per_step']):>6s} "
                         f"{_fmt(a['spearman_ties_broken_per_step']):>6s} {_fmt(s['spearman']):>6s} {_fmt(u['spearman']):>6s} "
                         f"{_fmt(a['mae']):>6s} {_fmt(a['brier']):>6s} {_fmt(a['ece']):>6s} "
                         f"{_fmt(a['zero_var_auc']):>6s} {_fmt(s['zero_var_auc']):>6s} {_fmt(u['zero_var_auc']):>6s}")
    phases = PHASES + ("overall",)
    lines += ["", "effective (mixed) share of the groups each rule would have chosen (logged share: rule uniform; "
                  "ceiling: oracle), and their mean observed rate",
              f"{'predictor':28s} {'rule':28s} " + " ".join(f"{p:>7s}" for p in phases) + "   rate"]
    for label, result in report["predictors"].items():
        rules = result["mean"]["overall"]["rules"]
        for rule in rules:
            lines.append(f"{label[:28]:28s} {rule[:28]:28s} " + " ".join(
                f"{_fmt(result['mean'][p]['rules'][rule]):>7s}" for p in phases)
                + f" {_fmt(result['mean']['overall']['rule_rates'][rule]):>6s}")
    return "\n".join(lines)
