"""Tiny training runs for the end-to-end tests: a one-layer model on one-digit sums, and helpers to compare
two runs (metrics without timings, the checkpointed parameters)."""

from rollwise.config import RunConfig
from rollwise.store.checkpoint import list_checkpoints, read_checkpoint

TIMING_KEYS = {"time_select", "time_gen", "time_verify", "time_update", "seconds", "wall_seconds", "rpo_fill_seconds"}


# One-digit sums of 2-3 terms: a 1-layer model warmed up for a few seconds answers some of them, so
# groups have mixed outcomes and GRPO has a gradient (a random model never answers right: zero advantages).
TEST_TASK = {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1, "operators": ["+"],
             "allow_parentheses": False, "allow_negation": False}


def tiny_config(tmp_path, name="run", **changes) -> RunConfig:
    # The warmed-up test model is cached once per test session (tmp_path's parent is the session's base).
    base = dict(out_dir=str(tmp_path / name), cache_dir=str(tmp_path.parent / "tiny-cache"), task_options=TEST_TASK,
                warmup_task_options={"max_terms": 3}, warmup_steps=400, warmup_batch=64, warmup_items=300, tiny_layers=1,
                tiny_hidden=32, tiny_heads=2, train_size=40, eval_size=12, batch_prompts=4, samples_per_prompt=4,
                steps=2, eval_every=2, eval_samples=2, checkpoint_every=1, probe_every=0, progress=False,
                lr=1e-2, verify_workers=1, warmup_target_acc=0.0)
    base.update(changes)
    return RunConfig(**base)


def model_parameters(out_dir) -> dict:
    state = read_checkpoint(list_checkpoints(out_dir)[-1][1])
    return state["components"]["model"]


def comparable(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS and not k.startswith("time_")} for r in rows]
