"""Numbers of a comparison: final accuracy, cost to reach a target accuracy, and ratios.

The question a comparison answers is "what did variant X cost to get as good as the baseline?", so
for every run the cost (steps, rollouts, generated tokens, training and wall seconds) is read at the
first evaluation whose held-out accuracy reaches the target. Two crossings are reported:

- per seed: each run's own first crossing; mean and standard error over the seeds that reached it,
  with `reached` counting them ("never reached" is a value, never a crash);
- on the mean curve: accuracy averaged over seeds at each evaluation step (the steps every seed
  evaluated), crossing taken on that curve and costs averaged over seeds at that step. The ratios
  against the first variant (the baseline) use this crossing: it exists whenever the average run
  gets there, which with few noisy seeds is far more often than "every seed got there".

The default target is the baseline's final accuracy (mean over its seeds), so ratio < 1 reads
"reached the baseline's final accuracy with this fraction of its cost".
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rollwise.config import load_yaml
from rollwise.track import read_metrics

# cost name in the summary -> cumulative key in metrics.jsonl
COSTS = {"steps": "step", "rollouts": "total_rollouts", "tokens": "total_tokens", "seconds": "seconds",
         "wall_seconds": "wall_seconds"}
# per-run statistics aggregated over seeds (mean and standard error)
STATS = ("final_acc", "final_step", "total_rollouts", "total_tokens", "seconds", "wall_seconds",
         "effective_ratio", "zero_var_ratio", "pred_spearman", "probe_spearman")
# an accuracy equal to the target up to float noise counts as reaching it (the default target is a mean
# of the very values it is compared with)
TOLERANCE = 1e-9
CROSSING = "first evaluation row whose accuracy >= target (no interpolation between evaluations)"
RATIO_BASIS = ("mean curve: first evaluation step where the accuracy averaged over seeds reaches the target; "
               "cost averaged over seeds at that step, divided by the baseline's")


def load_run(path: str | Path) -> dict:
    """A run directory's metric rows and seed (from config.yaml, else a `seed-N` directory name)."""
    path = Path(path)
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{path} is not a run directory: no metrics.jsonl in it")
    return {"path": str(path), "seed": _seed_of(path), "rows": read_metrics(metrics)}


def _seed_of(path: Path) -> int | None:
    config = path / "config.yaml"
    if config.is_file():
        seed = load_yaml(config).get("seed")
        if seed is not None:
            return int(seed)
    if path.name.startswith("seed-") and path.name[5:].isdigit():
        return int(path.name[5:])
    return None


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def eval_rows(rows: list[dict], metric: str = "eval_temp_acc") -> list[dict]:
    """The evaluation rows (those carrying the accuracy metric), in step order."""
    return sorted((r for r in rows if _finite(r.get(metric))), key=lambda r: r["step"])


def first_crossing(rows: list[dict], target: float, metric: str = "eval_temp_acc") -> dict | None:
    """Costs at the first evaluation with accuracy >= target, or None when no evaluation gets there."""
    for row in eval_rows(rows, metric):
        if row[metric] >= target - TOLERANCE:
            return {name: row.get(key) for name, key in COSTS.items()}
    return None


def mean_se(values) -> dict:
    """Mean and standard error (sample std / sqrt n) of the finite values; se is None below two values."""
    xs = np.array([v for v in values if _finite(v)], dtype=float)
    if xs.size == 0:
        return {"mean": None, "se": None, "n": 0}
    se = float(xs.std(ddof=1) / math.sqrt(xs.size)) if xs.size > 1 else None
    return {"mean": float(xs.mean()), "se": se, "n": int(xs.size)}


def _mean_of(rows: list[dict], key: str, min_step: float = 0) -> float | None:
    xs = [r[key] for r in rows if r.get("step", 0) > min_step and _finite(r.get(key))]
    return float(np.mean(xs)) if xs else None


def run_stats(rows: list[dict], metric: str = "eval_temp_acc") -> dict:
    """One run's final accuracy and totals, and its per-step ratios averaged over training steps.

    probe_spearman / pred_spearman are averaged after the first quarter of training: before the
    selector has seen most prompts its predictions are priors, and averaging them in would measure the
    prior rather than what the selector learned.
    """
    evals = eval_rows(rows, metric)
    last = rows[-1] if rows else {}
    quarter = max((r.get("step", 0) for r in rows), default=0) / 4
    return {
        "final_acc": evals[-1][metric] if evals else None,
        "final_step": last.get("step"),
        **{key: last.get(key) for key in ("total_rollouts", "total_tokens", "seconds", "wall_seconds")},
        "effective_ratio": _mean_of(rows, "effective_ratio"),
        "zero_var_ratio": _mean_of(rows, "zero_var_ratio"),
        "pred_spearman": _mean_of(rows, "pred_spearman", quarter),
        "probe_spearman": _mean_of(rows, "probe_spearman", quarter),
    }


def mean_curve(runs_rows: list[list[dict]], metric: str = "eval_temp_acc") -> dict:
    """Accuracy and costs averaged over seeds at the evaluation steps every seed has.

    Returns arrays: step, acc, acc_se (None-free: 0 with one seed) and one array per cost.
    """
    per_run = [{r["step"]: r for r in eval_rows(rows, metric)} for rows in runs_rows]
    steps = sorted(set.intersection(*(set(d) for d in per_run))) if per_run else []
    if not steps:
        return {"step": np.zeros(0), "acc": np.zeros(0), "acc_se": np.zeros(0), **{k: np.zeros(0) for k in COSTS}}
    acc = np.array([[d[s][metric] for s in steps] for d in per_run], dtype=float)
    curve = {"step": np.array(steps, dtype=float), "acc": acc.mean(axis=0), "acc_se": se_over_runs(acc)}
    for name, key in COSTS.items():
        values = np.array([[_num(d[s].get(key)) for s in steps] for d in per_run], dtype=float)
        curve[name] = _nanmean(values)
    return curve


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Column means ignoring missing values (NaN where a column has none), without numpy's warning."""
    counts = np.isfinite(values).sum(axis=0)
    sums = np.where(np.isfinite(values), values, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _num(value) -> float:
    return float(value) if _finite(value) else float("nan")


def se_over_runs(values: np.ndarray) -> np.ndarray:
    """Standard error over the rows (runs) of a runs x points array; zero with a single run."""
    if values.shape[0] < 2:
        return np.zeros(values.shape[1])
    return values.std(axis=0, ddof=1) / math.sqrt(values.shape[0])


def curve_crossing(curve: dict, target: float) -> dict:
    """Costs where the mean curve first reaches the target; every cost None when it never does."""
    hits = np.nonzero(curve["acc"] >= target - TOLERANCE)[0]
    if hits.size == 0:
        return {"reached": False, **{name: None for name in COSTS}}
    i = int(hits[0])
    return {"reached": True, **{name: _py(curve[name][i]) for name in COSTS}}


def _py(value) -> float | int | None:
    value = float(value)
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value


def default_target(loaded: dict[str, list[dict]], metric: str = "eval_temp_acc") -> float | None:
    """The first variant's final accuracy, mean over its seeds."""
    first = next(iter(loaded.values()), [])
    return mean_se(run_stats(run["rows"], metric)["final_acc"] for run in first)["mean"]


def summarize(loaded: dict[str, list[dict]], target: float | None = None, metric: str = "eval_temp_acc") -> dict:
    """The comparison summary of runs already loaded with `load_run`, grouped by variant (first = baseline).

    Example shape: summary["variants"]["mopps"]["ratios"]["rollouts"] == 0.6 means mopps reached the
    target with 60% of the baseline's rollouts (on the mean curve); None when either never reached it.
    """
    if not loaded:
        raise ValueError("nothing to summarise: no runs given")
    given = target is not None
    target = target if given else default_target(loaded, metric)
    baseline = next(iter(loaded))
    variants = {name: _variant_summary(runs, target, metric) for name, runs in loaded.items()}
    for entry in variants.values():
        entry["ratios"] = _ratios(entry["to_target"]["mean_curve"], variants[baseline]["to_target"]["mean_curve"])
    source = "given" if given else f"final {metric} of '{baseline}', mean over its seeds"
    return {"metric": metric, "target": target, "target_source": source, "baseline": baseline,
            "crossing": CROSSING, "ratio_basis": RATIO_BASIS, "variants": variants}


def _variant_summary(runs: list[dict], target: float | None, metric: str) -> dict:
    per_run = []
    for run in runs:
        crossing = first_crossing(run["rows"], target, metric) if target is not None else None
        per_run.append({"run_dir": run["path"], "seed": run["seed"], **run_stats(run["rows"], metric),
                        "reached": crossing is not None,
                        "to_target": crossing or {name: None for name in COSTS}})
    seeds = {name: {**mean_se(r["to_target"][name] for r in per_run if r["reached"]),
                    "reached": sum(r["reached"] for r in per_run), "runs": len(per_run)} for name in COSTS}
    curve = mean_curve([run["rows"] for run in runs], metric)
    crossing = curve_crossing(curve, math.inf if target is None else target)
    return {"seeds": [r["seed"] for r in per_run], "runs": per_run,
            "stats": {key: mean_se(r[key] for r in per_run) for key in STATS},
            "to_target": {"per_seed": seeds, "mean_curve": crossing}}


def _ratios(costs: dict, base: dict) -> dict:
    """cost / baseline cost for each cost; None when either is missing or the baseline's is zero."""
    out = {}
    for name in COSTS:
        mine, theirs = costs.get(name), base.get(name)
        out[name] = mine / theirs if _finite(mine) and _finite(theirs) and theirs > 0 else None
    return out


# ---------------------------------------------------------------------------------------- tables

def format_tables(summary: dict, per_seed: bool = False) -> str:
    """The summary as Markdown tables (readable as plain text on a terminal too). Every "train s" is the
    metric `seconds` (training seconds, evaluation excluded); "reached" always means the mean curve."""
    metric, target = summary["metric"], summary["target"]
    shown = "none (the baseline has no evaluation)" if target is None else f"{metric} >= {target:.4f}"
    variants = summary["variants"]
    parts = [f"Target: {shown} ({summary['target_source']}). Baseline: {summary['baseline']}.", "",
             "Cost to reach the target on the mean curve over seeds (ratio against the baseline in brackets; "
             "the ratios use this crossing):",
             "", _table(["variant", "reached (mean curve)", "steps", "rollouts", "tokens", "train s", "wall s"],
                        [_curve_row(name, v) for name, v in variants.items()]),
             "", "Final accuracy, and each seed's own first evaluation at the target (costs: mean ± se over the "
                 "seeds that reached it):",
             "", _table(["variant", "seeds", f"final {metric}", "seeds reaching target", "steps to target",
                         "rollouts to target", "tokens to target", "train s to target"],
                        [_seed_row(name, v) for name, v in variants.items()])]
    if summary["target_source"].startswith("final"):
        base = variants[summary["baseline"]]["to_target"]["per_seed"]["steps"]
        parts += ["", f"The target is the baseline's own mean final accuracy: its seeds reach it on their own only when "
                      f"they end at or above the mean ({base['reached']} of {base['runs']} here); its mean curve reaches "
                      "it by construction."]
    parts += ["", "Training statistics (mean ± se over seeds; rank correlations after the first quarter of training; "
                  "totals at the last step):",
              "", _table(["variant", "effective ratio", "zero-var ratio", "pred spearman", "probe spearman",
                          "total rollouts", "total tokens", "train s (total)", "wall s (total)"],
                         [_stats_row(name, v) for name, v in variants.items()])]
    if per_seed:
        rows = [_run_row(name, run) for name, v in variants.items() for run in v["runs"]]
        parts += ["", "Per run:", "", _table(["variant", "seed", f"final {metric}", "last step", "steps to target",
                                              "rollouts to target", "tokens to target", "train s to target", "run"],
                                             rows)]
    return "\n".join(parts) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def fmt(value, kind: str = "count") -> str:
    """One number for a table: counts as 12.3k / 1.23M, seconds, accuracies and correlations."""
    if not _finite(value):
        return "-"
    if kind == "acc":
        return f"{value:.3f}"
    if kind == "rho":
        return f"{value:+.2f}"
    if kind == "ratio":
        return f"{value:.2f}x"
    if kind == "seconds":
        return f"{value:.1f}" if abs(value) < 100 else f"{value:,.0f}"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):  # 1.85M, 154k; below 10,000 in full
        if abs(value) >= size:
            return f"{value / (1e3 if suffix == 'k' else size):.3g}{suffix}"
    return f"{value:.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:.3g}"


def fmt_stat(stat: dict, kind: str = "count") -> str:
    """mean ± se, or the mean alone with one value; '-' with none."""
    if stat.get("mean") is None:
        return "-"
    se = stat.get("se")
    return fmt(stat["mean"], kind) + (f" ± {fmt(se, kind).lstrip('+')}" if se is not None else "")


KINDS = {"steps": "count", "rollouts": "count", "tokens": "count", "seconds": "seconds", "wall_seconds": "seconds"}


def _seed_row(name: str, v: dict) -> list[str]:
    per_seed = v["to_target"]["per_seed"]
    reached = per_seed["steps"]
    costs = [fmt_stat(per_seed[c], KINDS[c]) if reached["reached"] else "never"
             for c in ("steps", "rollouts", "tokens", "seconds")]
    return [name, str(len(v["runs"])), fmt_stat(v["stats"]["final_acc"], "acc"),
            f"{reached['reached']}/{reached['runs']}", *costs]


def _curve_row(name: str, v: dict) -> list[str]:
    curve, ratios = v["to_target"]["mean_curve"], v["ratios"]
    if not curve["reached"]:
        return [name, "no", *["never"] * 5]
    cells = [f"{fmt(curve[c], KINDS[c])} ({fmt(ratios[c], 'ratio')})" for c in KINDS]
    return [name, "yes", *cells]


def _stats_row(name: str, v: dict) -> list[str]:
    s = v["stats"]
    return [name, fmt_stat(s["effective_ratio"], "acc"), fmt_stat(s["zero_var_ratio"], "acc"),
            fmt_stat(s["pred_spearman"], "rho"), fmt_stat(s["probe_spearman"], "rho"),
            fmt_stat(s["total_rollouts"]), fmt_stat(s["total_tokens"]), fmt_stat(s["seconds"], "seconds"),
            fmt_stat(s["wall_seconds"], "seconds")]


def _run_row(name: str, run: dict) -> list[str]:
    cost = run["to_target"]
    costs = [fmt(cost[c], KINDS[c]) if run["reached"] else "never" for c in ("steps", "rollouts", "tokens", "seconds")]
    return [name, str(run["seed"]), fmt(run["final_acc"], "acc"), fmt(run["final_step"]), *costs, run["run_dir"]]
