"""Selector cost at scale: a pool of 1,000,000 prompts, 4,096 candidates a step.

The claim: select plus observe under 5 ms together (median), saving or loading the pool's selector
state under 1 s. MoPPS makes no model call to select; this measures the
whole price it pays instead (drawing c x B Beta variables and updating B posteriors). The same for
every predictor + rule pair of `rollwise.predict` / `rollwise.select.rules` behind PredictiveSelector
(prompts in 20 groups of 8 length cells each), and the time to build prompt features for the pool.

    .venv/bin/python -m bench.costs.selector_cost [--pool 1000000] [--candidates 4096] [--batch 512]

It runs no training, so of the shared options it takes only --results-dir (`--rounds`: how many
select + observe rounds are timed). Writes bench/results/selector_cost.json and prints a summary.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import numpy as np

from bench.common import parse_args, results_path
from rollwise.store import safestate
from rollwise.predict.features import PromptFeatures, build_features
from rollwise.predict.registry import build_predictor
from rollwise.select.mopps import MoPPSSelector
from rollwise.select.predictive import PredictiveSelector
from rollwise.select.rules import build_rule
from rollwise.select.uniform import UniformSelector

PREDICTIVE = (("beta", {}, "topb"), ("drift", {}, "topb"), ("drift", {}, "mixed"), ("drift", {"level": "fit"}, "mixed"),
              ("irt", {}, "topb"), ("irt", {}, "band"), ("irt", {}, "mixed"), ("irt", {}, "greso"),
              ("ngram", {"buckets": 1 << 16}, "topb"))
NGRAMS_PER_PROMPT = 40  # hashed character 3-grams of a 42-character prompt


def time_steps(selector, pool: int, batch: int, steps: int, rng) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each select + observe (CPU time: what the step costs on a
    machine shared with other work, where wall time also counts waiting for a core)."""
    candidates = np.arange(pool)
    times, cpu = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        ids = selector.select(candidates, batch, rng)
        selector.observe(ids, rng.integers(0, 9, size=ids.size), np.full(ids.size, 8))
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return times, cpu


def time_state_io(selector) -> tuple[float, float, int]:
    start = time.perf_counter()
    data = safestate.encode(selector.state_dict())  # the checkpoint format the training loop uses
    saved = time.perf_counter() - start
    start = time.perf_counter()
    selector.load_state_dict(safestate.decode(data))
    return saved, time.perf_counter() - start, len(data)


def synthetic_features(pool: int, groups: int = 20, cells: int = 8, buckets: int = 1 << 16) -> PromptFeatures:
    """Groups x length cells, and random hashed n-grams (NGRAMS_PER_PROMPT of `buckets` per prompt)."""
    group = np.arange(pool) % groups
    rng = np.random.default_rng(1)
    return PromptFeatures(group=group, group_names=np.array([f"g{g}" for g in range(groups)]),
                          task=np.zeros(pool, dtype=np.int64), task_names=np.array(["task"]),
                          length=(np.arange(pool) // groups % cells).astype(np.float64),
                          cell=group * cells + np.arange(pool) // groups % cells,
                          ngram_indptr=np.arange(pool + 1, dtype=np.int64) * NGRAMS_PER_PROMPT,
                          ngram_indices=rng.integers(0, buckets, pool * NGRAMS_PER_PROMPT).astype(np.int32),
                          ngram_buckets=buckets)


def time_feature_build(pool: int) -> dict:
    """Seconds to build PromptFeatures (groups, cells, content hash) for a pool of short prompts."""
    from rollwise.data.pool import PoolItem, PromptPool

    items = [PoolItem(id=i, prompt=f"Calculate {i % 97} + {i % 89} + {i % 83}.", answer=str(i % 269),
                      metadata={"num_terms": 3, "num_digits": 2, "difficulty": {"num_terms": [2, 6]}})
             for i in range(pool)]
    prompts = PromptPool(items, "basic_arithmetic")
    start = time.perf_counter()
    features = build_features(prompts)
    return {"build_s": time.perf_counter() - start, "groups": features.num_groups}


def predictive_selectors(pool: int, factor: int) -> dict:
    features = synthetic_features(pool)
    out = {}
    for name, settings, rule in PREDICTIVE:
        label = name + ("-" + "-".join(f"{v}" for v in settings.values()) if settings else "") + "+" + rule
        out[label] = PredictiveSelector(build_predictor(name, settings, pool, features),
                                        build_rule(rule, pool_size=pool), candidates=factor)
    return out


def own_arguments(parser) -> None:
    parser.add_argument("--pool", type=int, default=1_000_000, help="prompts in the pool [default: 1000000]")
    parser.add_argument("--candidates", type=int, default=4096, help="c x B: Beta draws per step [default: 4096]")
    parser.add_argument("--batch", type=int, default=512, help="B: prompts selected per step [default: 512]")
    parser.add_argument("--rounds", type=int, default=200, help="select + observe rounds timed [default: 200]")
    parser.add_argument("--no-feature-build", action="store_true", help="skip timing the feature build")


def main() -> None:
    args = parse_args(__doc__, own_arguments, shared=["results_dir"])
    out = results_path("selector_cost.json")
    rng = np.random.default_rng(0)
    factor = args.candidates // args.batch
    selectors = {"mopps": MoPPSSelector(args.pool, candidates=factor),
                 "mopps-threshold": MoPPSSelector(args.pool, candidates=factor, band=(0.3, 0.7)),
                 "uniform": UniformSelector(args.pool), **predictive_selectors(args.pool, factor)}
    results = {"pool": args.pool, "candidates": args.candidates, "batch": args.batch, "selectors": {}}
    for name, selector in selectors.items():
        times, cpu = time_steps(selector, args.pool, args.batch, args.rounds, rng)
        save_s, load_s, size = time_state_io(selector)
        results["selectors"][name] = {"median_ms": 1e3 * statistics.median(times),
                                      "median_cpu_ms": 1e3 * statistics.median(cpu),
                                      "p90_ms": 1e3 * float(np.percentile(times, 90)),
                                      "state_save_s": save_s, "state_load_s": load_s, "state_mb": size / 2**20}
    if not args.no_feature_build:
        results["features"] = time_feature_build(args.pool)
    results["meets_targets"] = bool(all(r["median_ms"] < 5 and r["state_save_s"] < 1 and r["state_load_s"] < 1
                                        for r in results["selectors"].values()))
    results["meets_targets_cpu"] = bool(all(r["median_cpu_ms"] < 5 and r["state_save_s"] < 1 and r["state_load_s"] < 1
                                            for r in results["selectors"].values()))
    results["load_average"] = os.getloadavg()[0]  # wall time is only the step's cost on an idle machine
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"pool {args.pool:,}, {args.candidates} candidates, B = {args.batch}")
    for name, r in results["selectors"].items():
        print(f"  {name:22s} select+observe median {r['median_ms']:.2f} ms (p90 {r['p90_ms']:.2f}, CPU "
              f"{r['median_cpu_ms']:.2f}); "
              f"state {r['state_mb']:.0f} MB saved in {r['state_save_s']:.2f} s, loaded in {r['state_load_s']:.2f} s")
    if "features" in results:
        print(f"  features for {args.pool:,} prompts built in {results['features']['build_s']:.1f} s")
    print(f"targets (< 5 ms, < 1 s, every selector): wall {'met' if results['meets_targets'] else 'NOT met'}, CPU "
          f"{'met' if results['meets_targets_cpu'] else 'NOT met'} (load average {results['load_average']:.1f}); "
          f"written to {out}")


if __name__ == "__main__":
    main()
