"""How MoPPS's gain depends on the pool: its speed-up over uniform against uniform's zero-variance fraction.

Prompt selection pays where many groups carry no signal (all right or all wrong). Three pools of the
same task (sums of two-digit numbers) differ only in their largest number of terms: 2 (every prompt
is of the warm-up's level, few hopeless ones), 3 (the default run) and 5 (most prompts out of reach).
In each pool, uniform and MoPPS start from the same initial policy (the pool's own warm-up, with copy
items for every pool: the tiny model's codec and cache key follow the pool), three seeds each. For each
pool: uniform's mean zero-variance fraction over the run, and MoPPS's speed-up in steps to uniform's
final accuracy (mean curve over seeds), and to 50% and 75% of uniform's gain (at the final accuracy
itself the ratio is knife-edge).
The figure plots the speed-ups against the zero-variance fraction: does MoPPS's speed-up grow with it?
(Reported, no pass/fail claim.)

    .venv/bin/python -m bench.claims.pool_dependence [--seeds 0 1 2] [--parallel 2]

The pools are built from the default run, so this bench takes no --preset. Its runs are
`pool-tN-uniform` and `pool-tN-mopps` (N = 2, 3, 5). Writes bench/results/pool_dependence.json,
pool_dependence.png and a report per pool in bench/results/pool_dependence-tN/.
"""

from __future__ import annotations

from bench.common import SHARED_OPTIONS, load_variants, parse_args, results_path, run_variants, write_results
from bench.stats import cost_ratio, mean_curve_cost, speedups_by_gain
from rollwise.config import DEFAULT_TASK_OPTIONS

MAX_TERMS = (2, 3, 5)


# Every pool's warm-up mixes in copy items (the scratchpad preset's recipe): without them the 2-term pool's
# warm-up stayed on its plateau (1.7% greedy after 1,300 steps) where the default's left it at step ~725.
WARMUP = {"warmup_copy_fraction": 0.1}


def pool_variants(max_terms: int) -> dict[str, dict]:
    base = {"task_options": {**DEFAULT_TASK_OPTIONS, "max_terms": max_terms}, **WARMUP}
    return {f"pool-t{max_terms}-uniform": base, f"pool-t{max_terms}-mopps": {**base, "selector": "mopps"}}


def main() -> None:
    args = parse_args(__doc__, shared=[option for option in SHARED_OPTIONS if option != "preset"])
    pools = {}
    for max_terms in MAX_TERMS:
        variants = pool_variants(max_terms)
        uniform, mopps = variants
        summary = run_variants(f"pool_dependence-t{max_terms}", variants, args)
        steps_u, steps_m = (mean_curve_cost(summary, v, "steps") for v in (uniform, mopps))
        pools[max_terms] = {
            "target": summary["target"],
            "uniform_zero_var_ratio": summary["variants"][uniform]["stats"]["zero_var_ratio"],
            "mopps_zero_var_ratio": summary["variants"][mopps]["stats"]["zero_var_ratio"],
            "steps_to_target": {"uniform": steps_u, "mopps": steps_m},
            "mopps_speedup_steps": cost_ratio(steps_u, steps_m),
            "final_acc": {v: summary["variants"][v]["stats"]["final_acc"] for v in (uniform, mopps)},
            "mopps_speedup_steps_by_gain": speedups_by_gain(summary, load_variants(variants, args), uniform, mopps)}
    figure = plot(pools, results_path("pool_dependence.png"))
    path = write_results("pool_dependence", {"seeds": args.seeds, "device": args.device,
                                             "max_terms": list(MAX_TERMS), "pools": pools,
                                             "figure": str(figure)})
    for max_terms, pool in pools.items():
        zv, speed = pool["uniform_zero_var_ratio"], pool["mopps_speedup_steps"]
        se = f" +- {zv['se']:.2f}" if zv["se"] is not None else ""  # one seed: no standard error
        print(f"{pool_label(max_terms)}: uniform zero-variance {zv['mean']:.2f}{se}; MoPPS "
              + (f"{speed:.2f}x fewer steps" if speed else "never reached uniform's final accuracy")
              + f" to {pool['target']:.3f}; at fractions of uniform's gain: {pool['mopps_speedup_steps_by_gain']}")
    print(f"written to {path} and {figure}")


def pool_label(max_terms: int) -> str:
    return "2 terms" if max_terms == 2 else f"2-{max_terms} terms"


def plot(pools: dict, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    # one series per target: uniform's final accuracy, and fractions of the way to it
    series = [("to uniform's final accuracy", lambda pool: pool["mopps_speedup_steps"], "o", "C0")]
    series += [(f"to {float(f):.0%} of uniform's gain", lambda pool, f=f: pool["mopps_speedup_steps_by_gain"][f],
                marker, color) for f, marker, color in zip(("0.75", "0.5"), ("s", "^"), ("C1", "C2"))]
    for label, speedup_of, marker, color in series:
        for pool in pools.values():
            zv, speed = pool["uniform_zero_var_ratio"], speedup_of(pool)
            if speed is None:  # MoPPS never reached the target: an open marker on the axis
                ax.plot(zv["mean"], 0.0, marker=marker, mfc="none", color=color, ms=8, ls="none",
                        label=label + ": never reached")
                continue
            ax.errorbar(zv["mean"], speed, xerr=zv["se"] or 0.0, fmt=marker, capsize=3, color=color, label=label)
    for max_terms, pool in pools.items():  # each pool named once, under its column, whatever was reached
        ax.annotate(pool_label(max_terms), (pool["uniform_zero_var_ratio"]["mean"], -0.1), fontsize=8,
                    textcoords="offset points", xytext=(0, 4), ha="center", color="0.3")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one legend entry per series, however many pools it has
    ax.legend(unique.values(), unique.keys(), loc="upper left", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=-0.1)
    ax.axhline(1.0, color="0.5", lw=1, ls=":")
    ax.set_xlabel("uniform's zero-variance fraction (mean over the run and seeds)")
    ax.set_ylabel("MoPPS speed-up in steps (x fewer than uniform)")
    ax.set_title("MoPPS's gain against the pool's dead weight")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
