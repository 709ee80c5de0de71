"""Plots of `rollwise replay` (matplotlib, Agg backend): Spearman by step, reliability, rule shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rollwise.predict import metrics
from rollwise.predict.replay import Replayed


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def spearman_by_step(rep: Replayed) -> np.ndarray:
    """Per train step Spearman of predicted and observed rates (NaN where undefined)."""
    mean, out = rep.mean, np.full(rep.steps, np.nan)
    for t in range(rep.steps):
        m = rep.ordinal == t
        value = metrics.spearman(mean[m], rep.successes[m] / rep.trials[m])
        out[t] = np.nan if value is None else value
    return out


def _smooth(values: np.ndarray, window: int = 10) -> np.ndarray:
    out = np.full(values.size, np.nan)
    for t in range(values.size):
        chunk = values[max(0, t - window + 1): t + 1]
        if np.isfinite(chunk).any():
            out[t] = np.nanmean(chunk)
    return out


def plot_replays(replays: dict[str, list[Replayed]], out: Path) -> None:
    """spearman_by_step.png, calibration.png and rule_shares.png in `out`."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, reps in replays.items():
        length = min(r.steps for r in reps)
        stacked = np.array([spearman_by_step(r)[:length] for r in reps])
        counts = np.isfinite(stacked).sum(axis=0)
        series = np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)
        ax.plot(_smooth(series), label=label)
    ax.set(xlabel="train step", ylabel="Spearman (10-step mean)", title="predicted vs observed rate, per step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "spearman_by_step.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    for label, reps in replays.items():
        p = np.concatenate([r.mean for r in reps])
        s, n = np.concatenate([r.successes for r in reps]), np.concatenate([r.trials for r in reps])
        bins = metrics.calibration(p, s, n)
        ax.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], marker="o", label=label)
    ax.set(xlabel="predicted rate", ylabel="observed rate", title="reliability (all steps, all runs)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "calibration.png", dpi=120)
    plt.close(fig)

    rules = sorted({rule for reps in replays.values() for rule in reps[0].rule_shares})
    if rules:
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rules)), 4))
        width = 0.8 / len(replays)
        for j, (label, reps) in enumerate(replays.items()):
            shares = [np.mean([r.rule_shares[rule].mean() for r in reps]) for rule in rules]
            ax.bar(np.arange(len(rules)) + j * width, shares, width, label=label)
        ax.set_xticks(np.arange(len(rules)) + 0.4 - width / 2, rules, rotation=20, fontsize=7)
        ax.set(ylabel="effective share of chosen groups", title="what each rule would have trained on")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "rule_shares.png", dpi=120)
        plt.close(fig)
