"""Closed-loop check of predictor + rule pairs on a synthetic pool: what offline replay cannot show.

`rollwise replay` scores rules on a uniformly logged run, where the predictor sees every logged group
whatever the rule would have picked. Online, a rule's choices are also the predictor's only evidence:
a rule that stops picking a group of prompts stops learning that the group improved. This bench runs
each pair in a loop on a synthetic world (item-response rates: 5 groups from easy to hopeless, each
improving at its own speed, 10% of prompts never solvable) and reports the effective share of the
groups it chose and how far its mean prediction per group sits from the truth over the last 50 steps.
Not a tuning target (tuning uses replayed real logs); a guard against exploration traps.

    .venv/bin/python -m bench.claims.predict_loop [--steps 300] [--seeds 3]

Writes bench/results/predict_loop.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.special import expit

from rollwise.predict.features import PromptFeatures
from rollwise.predict.registry import build_predictor
from rollwise.select.predictive import PredictiveSelector
from rollwise.select.rules import build_rule

PAIRS = {
    "mopps (beta + topb)": ("beta", {}, "topb", {}),
    "irt + topb": ("irt", {}, "topb", {}),
    "irt + band": ("irt", {}, "band", {}),
    "irt + mixed (thompson)": ("irt", {}, "mixed", {}),
    "irt + mixed (predictive, power 4)": ("irt", {}, "mixed", {"source": "predictive", "power": 4}),
    "irt + mixed (predictive, power 8)": ("irt", {}, "mixed", {"source": "predictive", "power": 8}),
    "drift + topb": ("drift", {}, "topb", {}),
    "drift (level fit) + topb": ("drift", {"level": "fit"}, "topb", {}),
    "uniform": ("beta", {}, "uniform", {}),
}


def run_pair(pair, seed: int, pool: int = 2000, groups: int = 5, batch: int = 64, steps: int = 300) -> dict:
    predictor, settings, rule, rule_settings = pair
    world = np.random.default_rng(seed)
    group = np.arange(pool) % groups
    difficulty, stuck = world.normal(0.0, 1.0, pool), world.random(pool) < 0.1
    start, speed = np.linspace(1.5, -5.0, groups), np.linspace(0.005, 0.02, groups)
    features = PromptFeatures(group=group, group_names=np.array([str(g) for g in range(groups)]),
                              task=np.zeros(pool, dtype=np.int64), task_names=np.array(["synthetic"]),
                              length=np.zeros(pool))
    selector = PredictiveSelector(build_predictor(predictor, settings, pool, features),
                                  build_rule(rule, rule_settings, pool, 8), candidates=8)
    rng = np.random.default_rng(1000 + seed)
    shares, rates, errors = [], [], []
    for step in range(steps):
        truth = np.where(stuck, 0.0, expit((start + speed * step)[group] - difficulty))
        ids = selector.select(np.arange(pool), batch, rng)
        successes = rng.binomial(8, truth[ids])
        shares.append(float(np.mean((successes > 0) & (successes < 8))))
        rates.append(float(truth[ids].mean()))
        if step >= steps - 50:
            predicted = selector.predict(np.arange(pool))
            errors.append([abs(predicted[group == g].mean() - truth[group == g].mean()) for g in range(groups)])
        selector.observe(ids, successes, np.full(batch, 8))
    return {"effective_share": float(np.mean(shares)), "chosen_rate": float(np.mean(rates)),
            "group_mean_error": np.mean(errors, axis=0).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="bench/results/predict_loop.json")
    args = parser.parse_args()
    results = {}
    for label, pair in PAIRS.items():
        runs = [run_pair(pair, seed, steps=args.steps) for seed in range(args.seeds)]
        results[label] = {"effective_share": float(np.mean([r["effective_share"] for r in runs])),
                          "chosen_rate": float(np.mean([r["chosen_rate"] for r in runs])),
                          "group_mean_error": np.mean([r["group_mean_error"] for r in runs], axis=0).round(4).tolist()}
        r = results[label]
        print(f"{label:36s} effective share {r['effective_share']:.3f}, true rate of chosen {r['chosen_rate']:.3f}, "
              f"|group mean error| easy..hopeless {r['group_mean_error']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"steps": args.steps, "seeds": args.seeds, "pairs": results}, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
