"""Selector cost at scale: a pool of 1,000,000 prompts, 4,096 candidates a step.

Target (issue: prompt selection): select plus observe under 5 ms together (median), saving or
loading the pool's selector state under 1 s. MoPPS makes no model call to select; this measures the
whole price it pays instead (drawing c x B Beta variables and updating B posteriors).

    .venv/bin/python -m bench.selector_cost [--pool 1000000] [--candidates 4096] [--batch 512]

Writes bench/results/selector_cost.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from rollwise import safestate
from rollwise.select.mopps import MoPPSSelector
from rollwise.select.uniform import UniformSelector


def time_steps(selector, pool: int, batch: int, steps: int, rng) -> list[float]:
    candidates = np.arange(pool)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        ids = selector.select(candidates, batch, rng)
        selector.observe(ids, rng.integers(0, 9, size=ids.size), np.full(ids.size, 8))
        times.append(time.perf_counter() - start)
    return times


def time_state_io(selector) -> tuple[float, float, int]:
    start = time.perf_counter()
    data = safestate.encode(selector.state_dict())  # the checkpoint format the training loop uses
    saved = time.perf_counter() - start
    start = time.perf_counter()
    selector.load_state_dict(safestate.decode(data))
    return saved, time.perf_counter() - start, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--candidates", type=int, default=4096, help="c x B: Beta draws per step")
    parser.add_argument("--batch", type=int, default=512, help="B: prompts selected per step")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default="bench/results/selector_cost.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    factor = args.candidates // args.batch
    selectors = {"mopps": MoPPSSelector(args.pool, candidates=factor),
                 "mopps-threshold": MoPPSSelector(args.pool, candidates=factor, band=(0.3, 0.7)),
                 "uniform": UniformSelector(args.pool)}
    results = {"pool": args.pool, "candidates": args.candidates, "batch": args.batch, "selectors": {}}
    for name, selector in selectors.items():
        times = time_steps(selector, args.pool, args.batch, args.steps, rng)
        save_s, load_s, size = time_state_io(selector)
        results["selectors"][name] = {"median_ms": 1e3 * statistics.median(times),
                                      "p90_ms": 1e3 * float(np.percentile(times, 90)),
                                      "state_save_s": save_s, "state_load_s": load_s, "state_mb": size / 2**20}
    mopps = results["selectors"]["mopps"]
    results["meets_targets"] = bool(mopps["median_ms"] < 5 and mopps["state_save_s"] < 1 and mopps["state_load_s"] < 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"pool {args.pool:,}, {args.candidates} candidates, B = {args.batch}")
    for name, r in results["selectors"].items():
        print(f"  {name:16s} select+observe median {r['median_ms']:.2f} ms (p90 {r['p90_ms']:.2f}); "
              f"state {r['state_mb']:.0f} MB saved in {r['state_save_s']:.2f} s, loaded in {r['state_load_s']:.2f} s")
    print(f"targets (< 5 ms, < 1 s): {'met' if results['meets_targets'] else 'NOT met'}; written to {args.out}")


if __name__ == "__main__":
    main()
