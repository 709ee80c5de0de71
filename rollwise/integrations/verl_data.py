"""reasoning-gym tasks as verl's RL data files (parquet), for the verl plug-in (docs/verl.md).

    python -m rollwise.integrations.verl_data --out data/           # rollwise's default task, as `rollwise train`
    python -m rollwise.integrations.verl_data --task countdown --options '{}' --train-size 20000 --out data/

writes `data/train.parquet` and `data/val.parquet` (no question in common) in verl's layout: the chat
`prompt` (the question and rollwise's answer-tag instruction), `data_source` (the task name, which
`compute_score` scores with by default), `reward_model.ground_truth` (the reference answer) and
`extra_info` (`index`: the row, `question`, `metadata`: the reasoning-gym entry's metadata as JSON,
which scorers such as countdown's read). Needs pyarrow (installed with datasets), not verl.

Without `--options` a task gets rollwise's default options (basic_arithmetic: the default run's sums of
2-3 two-digit numbers; other tasks: reasoning-gym's own), and the sizes and seed default to rollwise's
(2,000 prompts, 500 held out, data seed 1234): the files hold exactly the pool and held-out set of
`rollwise train --task TASK`, row i being prompt id i. `--options '{}'` asks for reasoning-gym's defaults.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rollwise.config.task_defaults import TASK_DEFAULTS
from rollwise.data.pool import PromptPool, reasoning_gym_pools
from rollwise.policy.codecs import ANSWER_INSTRUCTION


def verl_rows(pool: PromptPool, instruction: str = ANSWER_INSTRUCTION) -> list[dict]:
    """One verl row per pool item, in pool order (row i is prompt id i for rollwise's selector)."""
    return [{"data_source": pool.task,
             "prompt": [{"role": "user", "content": f"{item.prompt}\n\n{instruction}"}],
             "ability": "reasoning",
             "reward_model": {"style": "rule", "ground_truth": item.answer},
             "extra_info": {"index": i, "question": item.prompt, "metadata": json.dumps(item.metadata)}}
            for i, item in enumerate(pool)]


def write_parquet(rows: list[dict], path: Path) -> Path:
    """Write rows as one parquet file (written to a temporary name, then renamed into place)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="basic_arithmetic", help="reasoning-gym task name (`rollwise tasks`)")
    parser.add_argument("--options", default=None, help="the task's reasoning-gym options as JSON (default: "
                        "rollwise's default for the task; '{}': reasoning-gym's own defaults)")
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--eval-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1234, help="data seed (rollwise's default data_seed)")
    parser.add_argument("--out", type=Path, required=True, help="directory for train.parquet and val.parquet")
    args = parser.parse_args(argv)
    try:
        options = json.loads(args.options) if args.options is not None else TASK_DEFAULTS.get(args.task, {})
    except json.JSONDecodeError as exc:
        parser.error(f"--options is not JSON: {exc}")
    if not isinstance(options, dict):
        parser.error("--options must be a JSON object")
    if args.train_size < 1 or args.eval_size < 1:
        parser.error("--train-size and --eval-size must be at least 1")
    train, held_out = reasoning_gym_pools(args.task, options, args.train_size, args.eval_size, args.seed)
    for name, pool in (("train", train), ("val", held_out)):
        print(f"wrote {write_parquet(verl_rows(pool), args.out / f'{name}.parquet')} ({len(pool)} rows)")


if __name__ == "__main__":
    main()
