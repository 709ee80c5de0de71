"""vLLM against transformers generate: generated tokens per second on the same model and batch, and
seconds per training step end to end, side by side in one run. The claim: vLLM generates at least 5x
the tokens per second of transformers on the same batch; `--learning`: the default run learns as well
with either engine (final accuracy within noise).

    .venv/bin/python -m bench.costs.engines [--models tiny smollm2] [--seeds 0 1 2] [--threads 2]
    .venv/bin/python -m bench.costs.engines --learning [--steps N]   # the default run with each engine

Throughput: one policy, one batch of training prompts; after one untimed warm-up call per engine, for
each seed both engines sample it (seeded, interleaved, so that both see the same machine load);
tokens/s = generated tokens / seconds of `generate`. The vLLM engine samples from the policy's weights, synced in place (start and sync
seconds are reported apart). Training steps: `rollwise train` for a few steps with each engine;
seconds per step = the sum of the step's phases (select, generation, verification, update, weight
sync), mean over the steps; the engine's start is a one-off and reported apart.

Ratios are within one run; absolute figures depend on the machine's load (two shared cores here).
Of the shared options it takes --seeds, --parallel, --steps, --runs-dir (the last three for --learning)
and --results-dir; not --preset or --device: the batches and step runs measured are fixed configurations
(MODELS, STEP_RUNS), on the CPU. The --learning runs are `uniform` (the default run, whose engine is hf;
`engine-hf-N` with --steps N) and `engine-vllm[-N]`. Writes bench/results/engines.json (keeping the
entries of other models and labels) and prints a summary.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import parse_args, results_path, run_name, run_runs
from bench.stats import cost_ratio, mean_se

# The batches measured: the tiny model's is the default run's (64 prompts x 8 samples, about 5-token
# answers); SmolLM2's is small because transformers generate makes a few tokens per second on it here.
MODELS = {
    "tiny": dict(config={}, prompts=64, samples=8, temperature=1.0, max_new_tokens=None),
    "smollm2": dict(config={"model": "smollm2", "train_size": 200, "eval_size": 8}, prompts=4, samples=4,
                    temperature=0.7, max_new_tokens=64),
    # A realistic RL generation batch (16 prompts x 8 samples): throughput only (transformers is slow here).
    "smollm2-b128": dict(config={"model": "smollm2", "train_size": 200, "eval_size": 8}, prompts=16, samples=8,
                         temperature=0.7, max_new_tokens=64),
}
# A few training steps per engine; the SmolLM2 run uses LoRA (as a user on two cores would).
STEP_RUNS = {
    "tiny": dict(steps=5, eval_samples=0, eval_every=0, probe_every=0),
    "smollm2": dict(model="smollm2", steps=2, batch_prompts=4, samples_per_prompt=4, max_new_tokens=64,
                    temperature=0.7, lora_r=8, lora_alpha=16, lr=1e-4, train_size=200, eval_size=4, eval_samples=0,
                    eval_every=0, probe_every=0, checkpoint_every=0),
}


def _mean_se(values) -> dict:
    """bench.stats.mean_se with the values under `values`, as engines.json has always kept them (per seed for
    throughput, per step for step times)."""
    return mean_se(values, key="values")


def throughput(name: str, seeds: list[int], threads: int) -> dict:
    """Tokens/s of both engines on one batch of `name`'s training prompts, per seed."""
    from rollwise.config import RunConfig
    from rollwise.policy.models import load_policy
    from rollwise.data.pool import build_pools
    from rollwise.rollout.engine import GenRequest, HFEngine, SamplingParams
    from rollwise.rollout.vllm_engine import VLLMEngine

    spec = MODELS[name]
    cfg = RunConfig(threads=threads, progress=False, **spec["config"])
    torch.set_num_threads(threads)
    policy = load_policy(cfg)
    policy.model.eval()
    pool, _ = build_pools(cfg)
    codec = policy.codec
    requests = [GenRequest(tuple(codec.prompt_ids(pool[i])), spec["samples"]) for i in range(spec["prompts"])]
    params = SamplingParams(temperature=spec["temperature"], max_new_tokens=spec["max_new_tokens"] or policy.max_new_tokens)
    engines = {"hf": HFEngine(policy.model, codec.eos_token_id, codec.pad_token_id, cfg.gen_batch_size),
               "vllm": VLLMEngine(policy.model, codec.eos_token_id, codec.pad_token_id, dtype=cfg.dtype,
                                  max_num_seqs=cfg.gen_batch_size)}
    vllm = engines["vllm"]
    start, first_sync = vllm.start_seconds, vllm.sync_seconds
    timed = time.perf_counter()
    vllm.sync_weights(policy.model)
    sync = time.perf_counter() - timed
    for engine in engines.values():  # one-off first-call costs (allocations, kernel set-up) stay out of the timings
        torch.manual_seed(0)
        engine.generate(requests[:1], SamplingParams(temperature=spec["temperature"], max_new_tokens=4))
    rates = {k: [] for k in engines}
    cpu_rates = {k: [] for k in engines}
    tokens = {k: [] for k in engines}
    for seed in seeds:
        for key, engine in engines.items():
            torch.manual_seed(seed)
            began, began_cpu = time.perf_counter(), time.process_time()
            groups = engine.generate(requests, params)
            seconds, cpu = time.perf_counter() - began, time.process_time() - began_cpu
            made = sum(s.generated_tokens for g in groups for s in g)
            rates[key].append(made / seconds)
            cpu_rates[key].append(made / cpu)
            tokens[key].append(made)
            print(f"  {name} seed {seed} {key}: {made} tokens in {seconds:.1f} s = {made / seconds:.1f} tokens/s "
                  f"({cpu:.1f} CPU s: {made / cpu:.1f} tokens per CPU second)", file=sys.stderr, flush=True)
    vllm.close()
    ratios = [cost_ratio(v, h) for v, h in zip(rates["vllm"], rates["hf"])]
    cpu_ratios = [cost_ratio(v, h) for v, h in zip(cpu_rates["vllm"], cpu_rates["hf"])]
    return {"batch": {"prompts": spec["prompts"], "samples": spec["samples"], "temperature": spec["temperature"],
                      "max_new_tokens": params.max_new_tokens, "threads": threads, "dtype": cfg.dtype},
            "tokens_per_s": {k: _mean_se(v) for k, v in rates.items()},
            "tokens": {k: _mean_se(v) for k, v in tokens.items()},
            "ratio_vllm_over_hf": _mean_se(ratios),
            # Per CPU second of this process: less sensitive to other processes' load on shared cores.
            "tokens_per_cpu_s": {k: _mean_se(v) for k, v in cpu_rates.items()},
            "cpu_ratio_vllm_over_hf": _mean_se(cpu_ratios),
            "vllm_start_s": start, "vllm_first_sync_s": first_sync, "vllm_sync_s": sync}


def step_seconds(name: str, threads: int, out: Path) -> dict:
    """Seconds per training step of each engine (a few steps of `rollwise train`)."""
    from rollwise.config import RunConfig
    from rollwise.track import read_metrics
    from rollwise.train import train

    result = {}
    for engine in ("hf", "vllm"):
        cfg = RunConfig(engine=engine, threads=threads, progress=False, out_dir=str(out / f"{name}-{engine}"),
                        **STEP_RUNS[name])
        began = time.perf_counter()
        train(cfg, overwrite=True)
        wall = time.perf_counter() - began
        rows = [r for r in read_metrics(out / f"{name}-{engine}" / "metrics.jsonl") if r["step"] > 0]
        phases = ("select", "gen", "verify", "gradnorm", "update", "weight_sync")
        per_step = [sum(r.get(f"time_{p}") or 0.0 for p in phases) for r in rows]
        result[engine] = {"seconds_per_step": _mean_se(per_step),
                          "gen_per_step": _mean_se([r["time_gen"] for r in rows]),
                          "update_per_step": _mean_se([r["time_update"] for r in rows]),
                          "sync_per_step": _mean_se([r.get("time_weight_sync") or 0.0 for r in rows]),
                          "tokens_per_step": _mean_se([r["tokens"] for r in rows]),
                          "sampler_logp_absdiff": [r.get("sampler_logp_absdiff") for r in rows],
                          "sampler_ratio_mean": [r.get("sampler_ratio_mean") for r in rows],
                          "run_wall_s": wall, "steps": len(rows)}
        print(f"  {name} {engine}: {result[engine]['seconds_per_step']['mean']:.2f} s/step", file=sys.stderr, flush=True)
    result["step_time_ratio_hf_over_vllm"] = cost_ratio(result["hf"]["seconds_per_step"]["mean"],
                                                        result["vllm"]["seconds_per_step"]["mean"])
    return result


def steps_suffix(steps: int | None) -> str:
    """How a shortened default run is told apart: its variants and its results key end in -STEPS."""
    return f"-{steps}" if steps else ""


def learning(args) -> dict:
    """The default run (or its first --steps steps) with each engine over seeds: final accuracy within noise?"""
    from rollwise.config import RunConfig
    from rollwise.policy.models import prepare_policy
    from rollwise.track import read_metrics

    prepare_policy(RunConfig())
    steps, suffix = args.steps, steps_suffix(args.steps)
    engines = {f"engine-hf{suffix}": {"engine": "hf"}, f"engine-vllm{suffix}": {"engine": "vllm"}}
    run_names = {key: run_name(key) for key in engines}  # the whole default run with hf is `uniform`
    run_runs({run_names[key]: values for key, values in engines.items()}, args)
    out = {}
    for name in engines:
        finals, initials, step_s = [], [], []
        for s in args.seeds:
            rows = read_metrics(Path(args.runs_dir) / run_names[name] / f"seed-{s}" / "metrics.jsonl")
            evals = [r for r in rows if r.get("eval_temp_acc") is not None]
            initials.append(evals[0]["eval_temp_acc"])
            finals.append(evals[-1]["eval_temp_acc"])
            step_s.append(float(np.mean([r["time_gen"] + r["time_update"] + (r.get("time_weight_sync") or 0)
                                         for r in rows if r["step"] > 0])))
        out[name] = {"initial": _mean_se(initials), "final": _mean_se(finals),
                     "gain": _mean_se(np.array(finals) - np.array(initials)), "gen_update_sync_s_per_step": _mean_se(step_s)}
    hf, vllm = (out[name]["final"]["values"] for name in engines)
    out["final_difference_vllm_minus_hf"] = _mean_se(np.array(vllm) - np.array(hf))
    out["steps"] = steps or RunConfig().steps
    return out


def own_arguments(parser) -> None:
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=list(MODELS),
                        help="the batches measured [default: tiny smollm2]")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the measurements [default: 2]")
    parser.add_argument("--skip-steps", action="store_true", help="throughput only")
    parser.add_argument("--label", default="", help="store results under MODEL-LABEL (e.g. threads1), keeping others")
    parser.add_argument("--learning", action="store_true", help="the default run with each engine over --seeds "
                        "(--parallel at once, its first --steps steps only if given)")


def main() -> None:
    args = parse_args(__doc__, own_arguments, shared=["seeds", "parallel", "steps", "runs_dir", "results_dir"])
    path = results_path("engines.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {}
    if args.learning:  # the whole default run under "learning", a shortened one under "learning-STEPS"
        results["learning" + steps_suffix(args.steps)] = learning(args)
    else:
        for name in args.models:
            key = f"{name}-{args.label}" if args.label else name
            entry = {**results.get(key, {}), "throughput": throughput(name, args.seeds, args.threads)}
            if not args.skip_steps and name in STEP_RUNS:  # throughput-only batches have no step run
                entry["training_step"] = step_seconds(name, args.threads, Path(args.runs_dir) / "engines")
            results[key] = entry
            path.write_text(json.dumps(results, indent=1))  # each model's entry as soon as it is measured
    path.write_text(json.dumps(results, indent=1))
    print(summary(results))


def summary(results: dict) -> str:
    lines = []
    for name in results:
        if "throughput" not in results[name]:
            continue
        t = results[name]["throughput"]
        hf, vl, ratio = t["tokens_per_s"]["hf"], t["tokens_per_s"]["vllm"], t["ratio_vllm_over_hf"]
        lines.append(f"{name}: generate {hf['mean']:.1f} +- {hf['se']:.1f} tokens/s (hf) vs {vl['mean']:.1f} +- "
                     f"{vl['se']:.1f} (vllm): {ratio['mean']:.2f}x +- {ratio['se']:.2f}; vLLM start {t['vllm_start_s']:.0f} s, "
                     f"sync {t['vllm_sync_s']:.2f} s")
        if "cpu_ratio_vllm_over_hf" in t:
            c = t["cpu_ratio_vllm_over_hf"]
            lines.append(f"{name}: per CPU second of the process: {c['mean']:.2f}x +- {c['se']:.2f}")
        step = results[name].get("training_step")
        if step:
            lines.append(f"{name}: training step {step['hf']['seconds_per_step']['mean']:.2f} s (hf) vs "
                         f"{step['vllm']['seconds_per_step']['mean']:.2f} s (vllm, sync "
                         f"{step['vllm']['sync_per_step']['mean']:.2f} s): {step['step_time_ratio_hf_over_vllm']:.2f}x")
    for key in (k for k in results if k.startswith("learning")):
        for name, r in results[key].items():
            if name.startswith("engine-"):
                lines.append(f"{name}: held-out temp-1 accuracy {r['initial']['mean']:.3f} -> {r['final']['mean']:.3f} "
                             f"+- {r['final']['se']:.3f} (gain {r['gain']['mean']:+.3f})")
        d = results[key]["final_difference_vllm_minus_hf"]
        lines.append(f"final accuracy after {results[key]['steps']} steps, vllm - hf: {d['mean']:+.3f} +- {d['se']:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
