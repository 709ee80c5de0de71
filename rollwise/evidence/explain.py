"""What a comparison report needs besides its numbers: each variant's settings, a glossary, and a warning
when the seeds and steps cannot tell the variants apart.

- Settings: every run saves its resolved configuration (config.yaml); the report lists, per variant, the
  values that differ between variants (selector, filter, ...) and once the values they share.
- Separation: a variant's final accuracy against the baseline's, with the standard error of their
  difference (over seeds; with one seed, the held-out evaluation's own standard error); a difference
  within two standard errors is reported as "cannot tell apart", never as a gain or a loss.
"""

from __future__ import annotations

import math
from pathlib import Path

from rollwise.config import load_yaml

# Execution settings: where and how a run ran, not what it computed.
NOT_SETTINGS = {"out_dir", "seed", "threads", "device", "progress", "report_to", "cache_dir", "checkpoint_every",
                "keep_checkpoints", "verify_workers", "gen_batch_size", "micro_batch"}
SHARED_SHOWN = ("task", "model", "algo", "steps", "batch_prompts", "samples_per_prompt", "temperature", "lr",
                "eval_every", "eval_samples")
SEPARATION = 2.0  # differences within this many standard errors are not told apart

TRAIN_SECONDS = ("cumulative training seconds (metric `seconds`): selection, generation, verification, update and "
                 "weight sync; evaluation excluded")
GLOSSARY = [
    ("final accuracy", "held-out accuracy at the last evaluation (the metric named in the tables), mean ± standard "
                       "error over seeds"),
    ("target", "the accuracy costs are measured to: given, or by default the baseline's final accuracy (mean over "
               "its seeds)"),
    ("reached (mean curve)", "whether the accuracy averaged over seeds at each evaluation step gets to the target; "
                             "the costs and ratios of the mean-curve table are read at that step (averaged over "
                             "seeds), with no interpolation between evaluations"),
    ("seeds reaching target", "how many runs reach the target on their own; costs in that table average over those "
                              "runs only. With the default target, the baseline's seeds reach their own mean only "
                              "when they end at or above it (often about half), while its mean curve reaches it by "
                              "construction"),
    ("ratio", "a variant's cost to the target on the mean curve divided by the baseline's: 0.5x = half the cost"),
    ("steps, rollouts, tokens", "training steps; completions sampled for training; tokens generated for training "
                                "(evaluation and probe excluded)"),
    ("train s", TRAIN_SECONDS + "; the same quantity in every table and figure"),
    ("wall s", "cumulative wall-clock seconds, evaluation included (metric `wall_seconds`)"),
    ("effective ratio", "fraction of a step's trained groups whose samples disagree (some right, some wrong): the "
                        "groups that carry a GRPO gradient"),
    ("zero-var ratio", "fraction of a step's rolled-out groups that are all right or all wrong"),
    ("pred / probe spearman", "rank correlation between the selector's predicted success and the observed success "
                              "rate, on the trained batch / on a uniformly drawn probe (no selection bias); averaged "
                              "after the first quarter of training"),
    ("cannot tell apart", f"the difference of final accuracies is within {SEPARATION:g} standard errors of the "
                          "difference: more seeds (or steps) are needed to call it a gain or a loss"),
]


def run_settings(run_path: str | Path) -> dict | None:
    """A run's resolved configuration (config.yaml, flat), or None when it has none."""
    path = Path(run_path) / "config.yaml"
    return load_yaml(path) if path.is_file() else None


def variant_settings(loaded: dict[str, list[dict]]) -> dict:
    """{"differ": {variant: {key: value}}, "shared": {key: value}} from each variant's first run's config."""
    configs = {name: run_settings(runs[0]["path"]) if runs else None for name, runs in loaded.items()}
    known = [c for c in configs.values() if c]
    keys = sorted({k for c in known for k in c} - NOT_SETTINGS)
    differing = [k for k in keys if len({repr(c.get(k)) for c in known}) > 1]
    shared = {k: known[0].get(k) for k in SHARED_SHOWN if known and k not in differing and k in known[0]}
    differ = {name: ({k: c.get(k) for k in differing} if c else None) for name, c in configs.items()}
    return {"differ": differ, "shared": shared}


def separation(summary: dict, loaded: dict[str, list[dict]]) -> dict:
    """Per variant against the baseline: difference of final accuracies, its standard error and whether the
    difference exceeds SEPARATION standard errors (None where no standard error exists)."""
    base = summary["baseline"]
    out = {}
    for name, v in summary["variants"].items():
        if name == base:
            continue
        mine, theirs = _final(v, loaded[name], summary["metric"]), _final(summary["variants"][base], loaded[base],
                                                                            summary["metric"])
        if mine[0] is None or theirs[0] is None:
            continue
        diff = mine[0] - theirs[0]
        se = math.sqrt(mine[1] ** 2 + theirs[1] ** 2) if mine[1] is not None and theirs[1] is not None else None
        out[name] = {"difference": diff, "se": se, "separated": None if not se else abs(diff) > SEPARATION * se,
                     "se_source": "seeds" if mine[2] and theirs[2] else "evaluation"}
    return out


def _final(variant: dict, runs: list[dict], metric: str) -> tuple[float | None, float | None, bool]:
    """(mean final accuracy, its standard error, whether the error is over seeds) of one variant."""
    stat = variant["stats"]["final_acc"]
    if stat["mean"] is None:
        return None, None, False
    if stat["se"] is not None:
        return stat["mean"], stat["se"], True
    se_key = metric.replace("_acc", "_se")  # one seed: the evaluation's own standard error over items
    rows = [r for r in runs[0]["rows"] if isinstance(r.get(metric), (int, float))] if runs else []
    se = rows[-1].get(se_key) if rows else None
    return stat["mean"], se if isinstance(se, (int, float)) else None, False


def warnings(summary: dict, separated: dict) -> list[str]:
    """Sentences for every variant the runs cannot tell from the baseline, and for single seeds."""
    base, lines = summary["baseline"], []
    single = [n for n, v in summary["variants"].items() if len(v["runs"]) < 2]
    if single:
        lines.append(f"One seed only for {', '.join(single)}: differences are judged against the held-out "
                     "evaluation's own standard error, which leaves out seed-to-seed variation; run more seeds.")
    for name, s in separated.items():
        if s["separated"] is None:
            lines.append(f"{name} vs {base}: no standard error, so the difference of final accuracies "
                         f"({s['difference']:+.3f}) cannot be judged.")
        elif not s["separated"]:
            lines.append(f"{name} vs {base}: final accuracies differ by {s['difference']:+.3f}, within "
                         f"{SEPARATION:g} standard errors ({s['se']:.3f}, from {s['se_source']}): these seeds and steps "
                         "cannot tell them apart; more seeds or steps would.")
    return lines


def settings_markdown(settings: dict) -> str:
    """The settings table (variant -> differing values) and a line of shared values."""
    shared = ", ".join(f"{k}={_value(v)}" for k, v in settings["shared"].items())
    rows = [f"| {name} | {'; '.join(f'{k}={_value(v)}' for k, v in values.items()) or 'no setting differs'} |"
            if values is not None else f"| {name} | - (no config.yaml) |" for name, values in settings["differ"].items()]
    head = "| variant | settings that differ between variants |\n|---|---|"
    return f"{head}\n" + "\n".join(rows) + (f"\n\nShared by all variants: {shared}." if shared else "")


def glossary_markdown() -> str:
    return "\n".join(f"- **{term}**: {text}." for term, text in GLOSSARY)


def _value(value) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
