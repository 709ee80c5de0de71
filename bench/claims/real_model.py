"""Does a real pretrained model learn here? SmolLM2-135M-Instruct on the `smollm2-sums` preset.

`rollwise train --preset smollm2-sums` (LoRA r 16, vLLM rollouts where installed, 2-term sums of 1-2 digit
numbers at temperature 0.7) over a run of at most about an hour on two cores. The claim: held-out accuracy
at the training temperature rises over the run (final minus initial, with the standard error of each
evaluation: 40 items x 2 samples, the same items at every evaluation).

    .venv/bin/python -m bench.claims.real_model [--seeds 0 1 2] [--parallel 1] [--steps N]

Three seeds by default, like every benchmark; a run uses both cores (the preset's 2 threads) for 20
minutes to an hour, so run them one at a time (--parallel 1), or one seed (--seeds 0) for a quick look.
Its runs are `smollm2-sums-uniform` (the preset unchanged). Writes bench/results/real_model.json and the
report (curves against steps and seconds) in bench/results/real_model/.
"""

from __future__ import annotations

from bench.common import parse_args, preset_variants, run_dirs, run_variants, write_results
from bench.stats import mean_se
from rollwise.track import read_metrics

PRESET = "smollm2-sums"


def eval_curve(run_dir) -> list[dict]:
    """The held-out evaluations of one run: step, seconds of training so far, accuracy and its error."""
    rows = read_metrics(f"{run_dir}/metrics.jsonl")
    return [{"step": r["step"], "seconds": r.get("wall_seconds"),
             "acc": r["eval_temp_acc"], "se": r.get("eval_temp_se"), "greedy": r.get("eval_greedy_acc")}
            for r in rows if r.get("eval_temp_acc") is not None]


def main() -> None:
    args = parse_args(__doc__, fixed_preset=PRESET)
    variants = preset_variants({"uniform": {}}, PRESET, args.steps)
    run_variants("real_model", variants, args)
    (name, values), = variants.items()
    curves = {f"seed-{s}": eval_curve(path) for s, path in zip(args.seeds, run_dirs(variants, args)[name])}
    gain = mean_se([100 * (c[-1]["acc"] - c[0]["acc"]) for c in curves.values()])
    results = {"preset": PRESET, "values": values, "seeds": args.seeds, "curves": curves,
               "gain_points": gain["mean"], "gain_se_points": gain["se"] if len(curves) > 1 else None}
    for seed, curve in curves.items():
        first, last = curve[0], curve[-1]
        print(f"{seed}: held-out accuracy at T 0.7 {first['acc']:.3f} +- {first['se'] or 0:.3f} (step {first['step']}) "
              f"-> {last['acc']:.3f} +- {last['se'] or 0:.3f} (step {last['step']}, {last['seconds'] or 0:.0f} s)")
    print(f"gain {results['gain_points']:+.1f} points over {len(curves)} seed(s); written to "
          f"{write_results('real_model', results)}")


if __name__ == "__main__":
    main()
