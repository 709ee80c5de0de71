"""Synthetic finished runs (metrics.jsonl, config.yaml, summary.json) with chosen accuracies and linear costs,
for the report, compare and bench tests."""

import json


def write_run(run_dir, accs, *, every=10, rollouts=16, tokens=80, seconds=1.0, seed=0, extra=None):
    """A run evaluated every `every` steps with the given accuracies and linear cumulative costs."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for step in range((len(accs) - 1) * every + 1):
        row = {"step": step, "total_rollouts": step * rollouts, "total_tokens": step * tokens,
               "seconds": step * seconds, "wall_seconds": step * seconds + 0.5}
        if step:
            row.update(effective_ratio=0.5, zero_var_ratio=0.25)
        if step % every == 0:
            row.update(eval_temp_acc=accs[step // every], eval_temp_se=0.01, eval_greedy_acc=accs[step // every])
        row.update((extra or {}).get(step, {}))
        rows.append(row)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "config.yaml").write_text(f"seed: {seed}\n")
    (run_dir / "summary.json").write_text(json.dumps({"interrupted": False}))
    return run_dir
