"""Figures of a comparison: accuracy against cost, effective groups, prediction quality.

Every line is a variant's mean curve over seeds with a band of +- one standard error: at each
evaluation step every seed has, the accuracy averaged over seeds, drawn against that step or against
the cost averaged over seeds at that step (rollouts, tokens, training seconds). That is the curve the
summary's crossings and ratios are read from, so the x marking a crossing lies on its line. Per-step
ratios are noisy, so they are drawn as a moving average whose window the axis title states.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, and safe in worker threads
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

from rollwise.store import safefiles  # noqa: E402
from rollwise.evidence.summary import TOLERANCE, mean_curve  # noqa: E402

ACC_AXES = (  # (summary cost name, metrics key, axis label)
    ("steps", "step", "training step"),
    ("rollouts", "total_rollouts", "training rollouts (completions sampled)"),
    ("tokens", "total_tokens", "generated tokens (training)"),
    ("seconds", "seconds", "training seconds (select, generate, verify, update; no evaluation)"),
)


def colors(names) -> dict[str, tuple]:
    """One fixed colour per variant, the same in every figure."""
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _label(name: str, runs: list) -> str:
    return f"{name} ({len(runs)} seed{'s' if len(runs) != 1 else ''})"


def _band(ax, x, mean, se, color, label, **kw) -> None:
    ax.plot(x, mean, color=color, label=label, lw=1.8, **kw)
    if np.any(se > 0):
        ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.2, lw=0)


def plot_accuracy(loaded: dict[str, list[dict]], summary: dict, path: Path) -> Path:
    """Four panels: held-out accuracy against steps, rollouts, tokens and training seconds."""
    metric, target = summary["metric"], summary["target"]
    palette = colors(loaded)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for ax, (cost, _, xlabel) in zip(axes.flat, ACC_AXES):
        for name, runs in loaded.items():
            curve = mean_curve([run["rows"] for run in runs], metric)
            x = curve["step"] if cost == "steps" else curve[cost]
            shown = np.isfinite(x)
            _band(ax, x[shown], curve["acc"][shown], curve["acc_se"][shown], palette[name], _label(name, runs),
                  marker="o" if shown.sum() < 40 else None, ms=3)
            _mark_crossing(ax, summary["variants"].get(name), curve, cost, target, palette[name])
        if target is not None:
            ax.axhline(target, color="0.35", ls="--", lw=1, label=f"target {target:.3f}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"held-out accuracy ({metric})")
        ax.set_title(f"accuracy vs {xlabel.split(' (')[0]}")
        if cost in ("rollouts", "tokens"):  # 12k, 1.5M; seconds keep plain numbers (EngFormatter writes 500m)
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(alpha=0.3)
    axes.flat[0].legend(loc="best", fontsize=9)
    fig.suptitle("Held-out accuracy: mean ± s.e. over seeds at each evaluation step (costs averaged over seeds at "
                 "that step);\nx marks where the mean curve first reaches the target (the crossing the ratios use)")
    return _save(fig, path)


def _mark_crossing(ax, variant: dict | None, curve: dict, cost: str, target, color) -> None:
    """An x on the variant's mean curve where it first reaches the target: the point the ratios use."""
    if not variant or target is None or not variant["to_target"]["mean_curve"].get("reached"):
        return
    point = crossing_point(curve, cost, target)
    if point is not None:
        ax.plot([point[0]], [point[1]], marker="x", ms=10, mew=2.5, color=color, zorder=5)


def crossing_point(curve: dict, cost: str, target: float) -> tuple[float, float] | None:
    """(cost, accuracy) of the mean curve's first evaluation at or above target: a vertex of the drawn line."""
    hits = np.nonzero(curve["acc"] >= target - TOLERANCE)[0]
    x = curve["step"] if cost == "steps" else curve[cost]
    if not hits.size or not np.isfinite(x[hits[0]]):
        return None
    return float(x[hits[0]]), float(curve["acc"][hits[0]])


def step_series(runs_rows: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A per-step metric's mean and standard error over the runs that logged it at each step."""
    steps = sorted({r["step"] for rows in runs_rows for r in rows if _finite(r.get(key))})
    if not steps:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    index = {s: i for i, s in enumerate(steps)}
    values = np.full((len(runs_rows), len(steps)), np.nan)
    for i, rows in enumerate(runs_rows):
        for r in rows:
            if _finite(r.get(key)):
                values[i, index[r["step"]]] = r[key]
    counts = np.isfinite(values).sum(axis=0)
    filled = np.where(np.isfinite(values), values, 0.0)
    mean = filled.sum(axis=0) / counts
    var = np.where(np.isfinite(values), (values - mean) ** 2, 0.0).sum(axis=0) / np.maximum(counts - 1, 1)
    se = np.where(counts > 1, np.sqrt(var / counts), 0.0)
    return np.array(steps, dtype=float), mean, se


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing-edge-safe centred moving average (shorter windows at the ends, no shift)."""
    if window <= 1 or values.size == 0:
        return values
    kernel = np.ones(window)
    sums = np.convolve(values, kernel, mode="same")
    counts = np.convolve(np.ones_like(values), kernel, mode="same")
    return sums / counts


def smoothing_window(n_points: int) -> int:
    """About a tenth of the run: per-step ratios of small batches are mostly sampling noise."""
    return max(1, n_points // 10)


def plot_per_step(loaded: dict[str, list[dict]], panels: list[tuple[str, str]], title: str, path: Path,
                  smooth: bool = True) -> Path | None:
    """One panel per (metrics key, y label), one mean line per variant that logged the key.

    Returns None (and writes nothing) when no variant logged any of the keys.
    """
    palette = colors(loaded)
    series = {key: {name: step_series([run["rows"] for run in runs], key) for name, runs in loaded.items()}
              for key, _ in panels}
    if not any(s[0].size for per in series.values() for s in per.values()):
        return None
    last_step = max((r["step"] for runs in loaded.values() for run in runs for r in run["rows"]), default=1)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (key, ylabel) in zip(axes[0], panels):
        window = 1
        for name, (x, mean, se) in series[key].items():
            if x.size == 0:
                continue
            window = smoothing_window(x.size) if smooth else 1
            sparse = x.size < 15
            _band(ax, x, moving_average(mean, window), moving_average(se, window), palette[name],
                  _label(name, loaded[name]), marker="o" if sparse else None, ms=3)
        pad = 0.03 * max(last_step, 1)  # the whole run, also when a metric was logged on few steps
        ax.set_xlim(-pad, max(last_step, 1) + pad)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{key}" + (f" (moving average over {window} steps)" if window > 1 else ""))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=9)
    fig.suptitle(title)
    return _save(fig, path)


def plot_effective(loaded: dict[str, list[dict]], path: Path) -> Path | None:
    panels = [("effective_ratio", "fraction of trained groups with mixed outcomes"),
              ("zero_var_ratio", "fraction of rolled-out groups all right or all wrong")]
    return plot_per_step(loaded, panels, "Effective groups per step (mean ± s.e. over seeds)", path)


def plot_prediction(loaded: dict[str, list[dict]], path: Path) -> Path | None:
    panels = [("pred_spearman", "Spearman: predicted vs observed (trained batch)"),
              ("probe_spearman", "Spearman: predicted vs observed (uniform probe)")]
    return plot_per_step(loaded, panels, "Prediction quality of the selector (mean ± s.e. over seeds)", path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    safefiles.write_atomic(path, buffer.getvalue())  # never through a link
    plt.close(fig)
    return path
