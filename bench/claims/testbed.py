"""The scratchpad testbed (`rollwise train --preset scratchpad`): does it behave like real RLVR in miniature?

Claims, each a ratio or fraction within one run of this bench, 3 seeds, one initial policy:
- under uniform sampling at least 70% of groups have zero variance at the start (first 5 steps);
- dynamic sampling reaches uniform's final held-out accuracy in at most half of uniform's steps (it
  runs half of uniform's budget, so "not reached" means the claim failed; how full its batches are
  and its generation-batch cap are reported);
- generation takes at least 50% of a uniform step's time (transformers engine);
- uniform GRPO raises held-out temperature-1 accuracy by at least 10 points within its budget, in
  about 15-20 minutes on two cores, the warm-up included;
- RL moves the frontier: held-out accuracy by number of terms at the start and at the end.

    .venv/bin/python -m bench.claims.testbed [--seeds 0 1 2] [--parallel 2] [--steps N]
    .venv/bin/python -m bench.claims.testbed --warmups      # the warm-up family only

Its runs: `scratchpad-uniform` (the preset unchanged, shared with bench.claims.rpo, frontier and gvm)
and `scratchpad-dynamic-half` (dynamic sampling, half the budget). Writes bench/results/testbed.json and
the report in bench/results/testbed/; `--warmups` builds the tiny model for every member of the warm-up
family (WARMUP_FAMILY, data seeds 1234, 777, 42, each in a throwaway cache) and writes
bench/results/testbed_warmups.json: the step where each reached its target, or the clear stop it ended with.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from bench.common import parse_args, preset_variants, run_dirs, run_name, run_variants, write_results
from bench.stats import cost_ratio, mean_curve_cost, mean_se
from rollwise.store.checkpoint import list_checkpoints, read_checkpoint
from rollwise.config import RunConfig
from rollwise.policy.models import load_model_dir_or_file, prepare_policy
from rollwise.config.presets import preset_values
from rollwise.track import read_metrics

PRESET = "scratchpad"
START_STEPS = 5
UNIFORM, DYNAMIC = run_name("uniform", PRESET), run_name("dynamic-half", PRESET)
DS_CAP = 4  # ds_max_gen_batches: at most 4 generation batches of B prompts per step


def variants(uniform_steps: int) -> dict[str, dict]:
    """The preset's uniform run and dynamic sampling with half its budget (the claim is that it gets there
    within it), keyed by their run names."""
    named = preset_variants({"uniform": {}, "dynamic-half": {"filter": "dynamic", "ds_max_gen_batches": DS_CAP}},
                            PRESET, uniform_steps)
    named[DYNAMIC]["steps"] = uniform_steps // 2
    return named


def early_mean(rows: list[dict], key: str) -> float:
    return float(np.mean([r[key] for r in rows[1:1 + START_STEPS]]))


def time_shares(rows: list[dict]) -> float:
    """Generation's share of training time (select + generate + verify + update) over a run's steps."""
    steps = [r for r in rows[1:] if "time_gen" in r]
    parts = {k: sum(r.get(k, 0.0) for r in steps) for k in ("time_select", "time_gen", "time_verify", "time_update")}
    return parts["time_gen"] / sum(parts.values())


def accuracy_by_terms(model, codec, items, samples: int = 4, seed: int = 0) -> dict[int, float]:
    """Held-out temperature-1 accuracy per number of terms (`samples` completions per item)."""
    from rollwise.rollout.evaluate import score_samples
    from rollwise.rollout.engine import GenRequest, HFEngine, SamplingParams
    from rollwise.verify.verifiers import build_verifier

    class InProcess:  # the numeric scorer is safe in-process for these digit-only answers
        verifier = build_verifier("basic_arithmetic")

        def score_batch(self, answers, its):
            return [self.verifier.score(a, it) for a, it in zip(answers, its)]

    engine = HFEngine(model, codec.eos_token_id, codec.pad_token_id)
    torch.manual_seed(seed)
    out = engine.generate([GenRequest(tuple(codec.prompt_ids(it)), samples) for it in items],
                          SamplingParams(1.0, 1.0, codec.max_new_tokens))
    acc = score_samples(out, items, codec, InProcess()).mean(axis=1)
    terms = np.array([int(it.metadata["num_terms"]) for it in items])
    return {int(k): float(acc[terms == k].mean()) for k in sorted(set(terms.tolist()))}


def frontier(model_dir: str, run_dir: Path, cfg: RunConfig) -> dict:
    """Accuracy by number of terms of the initial policy and of the run's last checkpoint."""
    from rollwise.data.pool import build_pools

    _, held_out = build_pools(cfg)
    model, codec = load_model_dir_or_file(Path(model_dir))
    model.eval()
    start = accuracy_by_terms(model, codec, held_out.items)
    state = read_checkpoint(list_checkpoints(run_dir)[-1][1])
    model.load_state_dict(state.get("components", state)["model"])
    return {"start": start, "end": accuracy_by_terms(model, codec, held_out.items)}


def steps_at_common_target(rows: dict[str, list[list[dict]]], ds_budget: int) -> dict:
    """When dynamic sampling misses uniform's final accuracy, a target both reach: the lower of the two
    mean-curve accuracies at dynamic sampling's last step; steps each needs to get there, and the ratio."""
    from rollwise.evidence.summary import curve_crossing, mean_curve

    curves = {name: mean_curve(runs) for name, runs in rows.items()}
    at = {name: float(np.interp(ds_budget, c["step"], c["acc"])) for name, c in curves.items()}
    target = min(at.values())
    steps = {name: curve_crossing(c, target)["steps"] for name, c in curves.items()}
    ratio = cost_ratio(steps[DYNAMIC], steps[UNIFORM])
    return {"target": target, "acc_at_ds_last_step": at, "steps": steps, "ds_over_uniform": ratio}


def warmup_info(model_dir: str) -> dict:
    return json.loads((Path(model_dir) / "rollwise.json").read_text())["warmup"]


def measure(args, summary: dict, model_dir: str, steps: int) -> dict:
    names = variants(steps)
    dirs = run_dirs(names, args)
    rows = {name: [read_metrics(d / "metrics.jsonl") for d in paths] for name, paths in dirs.items()}
    evals = {name: [[r for r in run if r.get("eval_temp_acc") is not None] for run in runs]
             for name, runs in rows.items()}
    uni = rows[UNIFORM]
    initial = np.array([e[0]["eval_temp_acc"] for e in evals[UNIFORM]])
    final = np.array([e[-1]["eval_temp_acc"] for e in evals[UNIFORM]])
    ds_rows = [[r for r in run[1:] if "groups" in r] for run in rows[DYNAMIC]]
    ds_steps = mean_curve_cost(summary, DYNAMIC, "steps")
    warm = warmup_info(model_dir)
    run_wall = np.array([run[-1]["wall_seconds"] for run in uni])
    cfg = RunConfig.from_sources(preset=PRESET)
    return {
        "preset": preset_values(PRESET), "seeds": args.seeds, "model": model_dir, "uniform_steps": steps,
        "warmup": {"steps": warm["steps"], "best_step": warm["best_step"], "greedy_acc": warm["best_greedy_acc"],
                   "seconds": warm["seconds"]},
        "initial_temp_acc": mean_se(initial), "final_temp_acc": mean_se(final),
        "gain_points": mean_se(100 * (final - initial)),
        "zero_var_ratio_at_start": mean_se([early_mean(run, "zero_var_ratio") for run in uni]),
        "all_wrong_at_start": mean_se([early_mean(run, "all_zero_groups") / cfg.batch_prompts for run in uni]),
        "generation_share_uniform": mean_se([time_shares(run) for run in uni]),
        "seconds_per_step_uniform": mean_se([run[-1]["seconds"] / run[-1]["step"] for run in uni]),
        "dynamic": {
            "target": summary["target"], "steps_to_target_mean_curve": ds_steps, "steps_budget": steps // 2,
            "per_seed_to_target": summary["variants"][DYNAMIC]["to_target"]["per_seed"]["steps"],
            "final_temp_acc": summary["variants"][DYNAMIC]["stats"]["final_acc"],
            "cap_gen_batches": DS_CAP,
            "batch_fill": mean_se([np.mean([r["groups"] / cfg.batch_prompts for r in run]) for run in ds_rows]),
            "capped_fraction": mean_se([np.mean([bool(r.get("ds_capped")) for r in run]) for run in ds_rows]),
            "gen_batches_per_step": mean_se([np.mean([r.get("gen_batches", 1) for r in run]) for run in ds_rows]),
            "wall_seconds": mean_se([run[-1]["wall_seconds"] for run in rows[DYNAMIC]]),
            "common_target": steps_at_common_target(rows, steps // 2),
        },
        "run_wall_seconds": mean_se(run_wall),
        "first_run_minutes_incl_warmup": float((warm["seconds"] + run_wall.mean()) / 60),
        "parallel_runs": args.parallel,
        "frontier_seed0": frontier(model_dir, dirs[UNIFORM][0], cfg),
    }


def claims(r: dict) -> dict:
    ds = r["dynamic"]["steps_to_target_mean_curve"]
    return {"zero_var_at_least_70pct": r["zero_var_ratio_at_start"]["mean"] >= 0.70,
            "dynamic_within_half_the_steps": ds is not None and ds <= r["uniform_steps"] / 2,
            "generation_at_least_half_of_step_time": r["generation_share_uniform"]["mean"] >= 0.5,
            "gain_at_least_10_points": r["gain_points"]["mean"] >= 10,
            "about_15_20_minutes": r["first_run_minutes_incl_warmup"] <= 21}


def print_summary(r: dict) -> None:
    g, d = r["gain_points"], r["dynamic"]
    print(f"warm-up: greedy {r['warmup']['greedy_acc']:.3f} on 2-3 terms at step {r['warmup']['best_step']} "
          f"({r['warmup']['seconds']:.0f} s)")
    print(f"uniform, {len(r['seeds'])} seeds, {r['uniform_steps']} steps: held-out temp-1 accuracy "
          f"{r['initial_temp_acc']['mean']:.3f} -> {r['final_temp_acc']['mean']:.3f}, gain {g['mean']:+.1f} "
          f"+- {g['se']:.1f} points (per seed {', '.join(f'{x:+.1f}' for x in g['per_seed'])})")
    print(f"zero-variance groups, first {START_STEPS} steps: {r['zero_var_ratio_at_start']['mean']:.1%} "
          f"(all wrong {r['all_wrong_at_start']['mean']:.1%})")
    print(f"generation share of step time: {r['generation_share_uniform']['mean']:.1%}; "
          f"{r['seconds_per_step_uniform']['mean']:.2f} s a step")
    print(f"dynamic sampling: uniform's final {d['target']:.3f} reached at step {d['steps_to_target_mean_curve']} "
          f"(budget {d['steps_budget']}); batches {d['batch_fill']['mean']:.0%} full, cap {d['cap_gen_batches']} "
          f"generation batches hit on {d['capped_fraction']['mean']:.0%} of steps")
    common = d["common_target"]
    print(f"  at a target both reach ({common['target']:.3f}, accuracy at step {d['steps_budget']}): dynamic "
          f"{common['steps'][DYNAMIC]} steps, uniform {common['steps'][UNIFORM]} (ratio {common['ds_over_uniform']})")
    front = r["frontier_seed0"]
    print("accuracy by terms (seed 0), start -> end: " + ", ".join(
        f"{k}: {front['start'][k]:.2f} -> {front['end'][k]:.2f}" for k in front["start"]))
    print(f"warm-up {r['warmup']['seconds']:.0f} s + run {r['run_wall_seconds']['mean']:.0f} s = "
          f"{r['first_run_minutes_incl_warmup']:.1f} min ({r['parallel_runs']} runs at once)")
    print(f"claims: {r['claims']}")


PLUS = {"min_digits": 2, "max_digits": 2, "operators": ["+"], "allow_parentheses": False, "allow_negation": False}
FOUR_TERMS = {"task_options": {"min_terms": 2, "max_terms": 4, **PLUS}, "warmup_task_options": {"max_terms": 4}}
SEEDS = (1234, 777, 42)
COPY = {"warmup_copy_fraction": 0.1}  # the scratchpad preset's; the default run warms up without them
WARMUP_FAMILY = {  # name -> (preset, overrides, data seeds); the warm-up family the README documents
    "sums (warm-up on 2 terms), copy items": ("sums", COPY, SEEDS),
    "sums, warm-up on 2-4 terms, copy items, lr 1e-3": ("sums", {**FOUR_TERMS, **COPY, "warmup_lr": 1e-3}, SEEDS),
    "sums, warm-up on 2-4 terms, copy items, lr 3e-3": ("sums", {**FOUR_TERMS, **COPY}, (777,)),  # the clear stop
    "scratchpad (warm-up on 2-3 terms)": ("scratchpad", {}, SEEDS),
}


def warmup_family(family: dict = WARMUP_FAMILY) -> list[dict]:
    """Build every member in a throwaway cache; record where it reached its target or how it stopped."""
    import tempfile

    from rollwise.policy.models import ensure_tiny
    from rollwise.policy.warmup import WarmupMissedTarget

    torch.set_num_threads(1)
    results = []
    for name, (preset, overrides, seeds) in family.items():
        for seed in seeds:
            with tempfile.TemporaryDirectory() as cache:
                cfg = RunConfig.from_sources(preset=preset, overrides={**overrides, "data_seed": seed, "cache_dir": cache})
                row = {"family": name, "data_seed": seed, "warmup_lr": cfg.warmup_lr,
                       "copy_fraction": cfg.warmup_copy_fraction, "max_steps": cfg.warmup_steps}
                try:
                    # measured afresh, also where the settings are a shipped preset's (rollwise.policy.shipped)
                    info = warmup_info(str(ensure_tiny(cfg, log=lambda m: None, use_shipped=False)))
                    row.update(reached=True, step=info["best_step"], greedy_acc=info["best_greedy_acc"],
                               seconds=info["seconds"])
                except WarmupMissedTarget as exc:
                    row.update(reached=False, stopped_with=str(exc))
            print(row)
            results.append(row)
    return results


def main() -> None:
    args = parse_args(__doc__, _own_arguments, fixed_preset=PRESET)
    if args.warmups:
        print(f"written to {write_results('testbed_warmups', {'runs': warmup_family()})}")
        return
    steps = args.steps or preset_values(PRESET)["steps"]
    names = variants(steps)
    model_dir = prepare_policy(RunConfig.from_dict(names[UNIFORM]))  # the one initial policy, built (or found) once
    summary = run_variants("testbed", names, args)
    results = measure(args, summary, model_dir, steps)
    results["claims"] = claims(results)
    frontier_keys = results["frontier_seed0"]
    results["frontier_seed0"] = {k: {str(t): v for t, v in d.items()} for k, d in frontier_keys.items()}
    path = write_results("testbed", results)
    results["frontier_seed0"] = frontier_keys
    print_summary(results)
    print(f"written to {path}")


def _own_arguments(parser) -> None:
    parser.add_argument("--warmups", action="store_true", help="build the warm-up family only (no RL runs) and "
                        "write testbed_warmups.json")


if __name__ == "__main__":
    main()
