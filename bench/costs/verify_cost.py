"""What the verifier sandbox costs: answers per second through sandboxed workers, start-up, and
the in-process scorers' rate (which must not have slowed down).

The claim: >= 200 answers/s through the sandboxed path on two cores (a training step scores 512
answers). Every answer there runs in its own fork of a sandboxed template process.

    .venv/bin/python -m bench.costs.verify_cost [--workers 2] [--batches 5] [--batch 512] [--tasks ...]

It runs no training, so of the shared options it takes only --results-dir. Writes
bench/results/verify_cost.json and prints a summary. The machine's load average is recorded with the
numbers: other processes on the same cores slow fork-per-answer down.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import reasoning_gym

from bench.common import parse_args, results_path
from rollwise.data.pool import PoolItem, json_safe
from rollwise.verify.guard import GuardedVerifier
from rollwise.verify.verifiers import build_verifier


def items(task: str, count: int) -> list[PoolItem]:
    data = reasoning_gym.create_dataset(task, size=count, seed=3)
    return [PoolItem(i, e["question"], str(e["answer"]), e.get("metadata", {}), e)
            for i, e in ((i, json_safe(data[i])) for i in range(count))]


def answers_for(pool: list[PoolItem], n: int) -> tuple[list[str], list[PoolItem]]:
    """Half right (the reference), a quarter near misses, a quarter junk: what a policy writes."""
    answers, chosen = [], []
    for k in range(n):
        item = pool[k % len(pool)]
        kind = k % 4
        answers.append(item.answer if kind < 2 else item.answer[:-1] + "0" if kind == 2 else "I think 42")
        chosen.append(item)
    return answers, chosen


def sandboxed(task: str, workers: int, batch: int, batches: int) -> dict:
    pool = items(task, 16)
    answers, chosen = answers_for(pool, batch)
    start = time.perf_counter()
    guard = GuardedVerifier(build_verifier(task, "auto"), workers=workers, timeout=5.0)
    protections = guard.protections  # the first worker is up
    first_ready = time.perf_counter() - start
    guard.score_batch(answers[:4 * workers], chosen[:4 * workers])  # the other workers start
    all_ready = time.perf_counter() - start
    rates, accs = [], []
    for _ in range(batches):
        t = time.perf_counter()
        scores = guard.score_batch(answers, chosen)
        rates.append(batch / (time.perf_counter() - t))
        accs.append(sum(s.acc for s in scores) / batch)
    counts = guard.pop_counts()
    guard.close()
    return {"task": task, "workers": workers, "batch": batch, "answers_per_s": rates,
            "median_answers_per_s": statistics.median(rates), "startup_first_worker_s": first_ready,
            "startup_all_workers_s": all_ready, "acc": accs[-1], "counts": counts, "protections": protections}


def in_process(n: int = 2000) -> dict:
    pool = items("countdown", 64)
    answers, chosen = answers_for(pool, n)
    with GuardedVerifier(build_verifier("countdown", "auto")) as guard:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            guard.score_batch(answers, chosen)
            times.append(time.perf_counter() - t)
    best = min(times)
    return {"task": "countdown", "answers": n, "seconds": best, "answers_per_s": n / best}


def own_arguments(parser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="sandboxed workers [default: 2]")
    parser.add_argument("--batch", type=int, default=512, help="answers per batch [default: 512]")
    parser.add_argument("--batches", type=int, default=5, help="batches timed per task [default: 5]")
    parser.add_argument("--tasks", nargs="+", default=["spiral_matrix", "n_queens"],
                        help="reasoning-gym tasks scored [default: spiral_matrix n_queens]")


def main() -> None:
    args = parse_args(__doc__, own_arguments, shared=["results_dir"])
    path = results_path("verify_cost.json")
    load_before = os.getloadavg()
    results = {"cpus": os.cpu_count(), "load_average_before": load_before,
               "sandboxed": [sandboxed(t, args.workers, args.batch, args.batches) for t in args.tasks],
               "in_process": in_process()}
    results["load_average_after"] = os.getloadavg()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    print(f"{results['cpus']} CPUs, load average {load_before[0]:.1f} before, "
          f"{results['load_average_after'][0]:.1f} after")
    for r in results["sandboxed"]:
        print(f"sandboxed {r['task']:<14} {r['workers']} workers: {r['median_answers_per_s']:6.0f} answers/s "
              f"(batches of {r['batch']}: {', '.join(f'{x:.0f}' for x in r['answers_per_s'])}); start-up "
              f"{r['startup_first_worker_s']:.2f} s first worker, {r['startup_all_workers_s']:.2f} s all")
    p = results["in_process"]
    print(f"in-process countdown: {p['answers']} answers in {p['seconds']:.3f} s ({p['answers_per_s']:.0f}/s)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
