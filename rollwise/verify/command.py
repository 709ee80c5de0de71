"""`rollwise verify`: score answers through the same guarded verifier that training uses.

    echo '(6 + 4) * 3' | rollwise verify --item '{"question": "...", "answer": "(6+4)*3",
        "metadata": {"numbers": [3, 4, 6], "target": 30}}' --task countdown
    rollwise verify answers.txt --task basic_arithmetic --seed 1234 --index 17
    rollwise verify completions.jsonl --item item.json --verifier math --extract

Answers are one per line (from a file, or stdin without one or with `-`), or JSONL records
`{"answer": ..., "id": ...}`. One JSON object per answer is printed:
`{"answer": ..., "acc": ..., "reward": ..., "error": ...}` (plus `id` when given). Useful for
checking a verifier on a model's actual outputs before spending a run on it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rollwise.data.pool import PoolItem, json_safe
from rollwise.verify.guard import MAX_ANSWER_CHARS, GuardedVerifier
from rollwise.verify.verifiers import VERIFIER_NAMES, build_verifier


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("verify", help="score answers against a task item through the verifier guard",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("answers", nargs="?", default="-",
                   help="File of answers, one per line or JSONL {\"answer\", \"id\"}; '-' or omitted: stdin.")
    p.add_argument("--item", default=None,
                   help="The item as JSON {\"question\", \"answer\", \"metadata\"} or a path to such a file.")
    p.add_argument("--task", default=None,
                   help="reasoning-gym task (its verifier; without --item the item is generated), or 'file'.")
    p.add_argument("--seed", type=int, default=0, help="Generator seed of the reasoning-gym item. [default: 0]")
    p.add_argument("--index", type=int, default=0, help="Index of the reasoning-gym item. [default: 0]")
    p.add_argument("--task-options", default="{}", help="JSON options of the reasoning-gym task generator.")
    p.add_argument("--verifier", default="auto", choices=VERIFIER_NAMES, help="[default: auto]")
    p.add_argument("--timeout", type=float, default=5.0, help="Seconds per answer. [default: 5.0]")
    p.add_argument("--workers", type=int, default=2, help="Worker processes for worker-only verifiers. [default: 2]")
    p.add_argument("--memory-mb", type=int, default=1024, help="Memory limit of a worker. [default: 1024]")
    p.add_argument("--batch-budget", type=float, default=0.0,
                   help="Seconds the whole file may spend in workers before the rest is left unscored (error "
                        "'budget'); 0: no budget "
                        "(scoring a file is not a training step). [default: 0]")
    p.add_argument("--breaker-timeouts", type=int, default=0,
                   help="Skip the rest of one prompt's answers (error 'breaker', unscored) after this many of its "
                        "answers timed out (at least a quarter of its answers finished); 0: no breaker. [default: 0]")
    p.add_argument("--extract", action="store_true",
                   help="Answers are whole completions: score the last <answer> tag (else the last number).")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    task = args.task or "file"
    options = parse_json(args.task_options, "--task-options", dict)
    item = load_item(args.item, task, args.seed, args.index, options)
    verifier = build_verifier(task, args.verifier, options)
    records = read_answers(args.answers)
    answers = [extracted(a) if args.extract else a for a, _ in records]
    if args.batch_budget < 0 or args.breaker_timeouts < 0:
        raise ValueError("--batch-budget and --breaker-timeouts must not be negative (0 switches each off)")
    with GuardedVerifier(verifier, workers=args.workers, timeout=args.timeout, memory_mb=args.memory_mb,
                         batch_budget=args.batch_budget or None, breaker_timeouts=args.breaker_timeouts or None) as guard:
        # Which item the answers are scored against, on stderr so that stdout stays pure JSONL.
        print(f"rollwise verify: {verifier.name} verifier, item {item.prompt[:200]!r} with reference answer "
              f"{item.answer[:200]!r}", file=sys.stderr)
        scores = guard.score_batch(answers, [item] * len(answers))
    for (_, rid), answer, score in zip(records, answers, scores):
        row = {"answer": answer, "acc": score.acc, "reward": score.reward, "error": score.error}
        if answer is not None and len(answer) > MAX_ANSWER_CHARS:
            row.update(answer=answer[:200], answer_truncated=True)
        if rid is not None:
            row["id"] = rid
        print(json.dumps(row))
    return 0


def extracted(completion: str | None) -> str | None:
    """What training scores of a completion: the last <answer> tag, else the last number."""
    from rollwise.verify.extract import extract_answer, last_number

    if completion is None:
        return None
    found = extract_answer(completion)
    return found if found is not None else last_number(completion)


def parse_json(text: str, flag: str, kind: type):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag}: not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, kind):
        expected = "object" if kind is dict else kind.__name__
        raise ValueError(f"{flag}: expected a JSON {expected}, got {type(value).__name__}")
    return value


def load_item(spec: str | None, task: str, seed: int, index: int, options: dict) -> PoolItem:
    """The item to score against: given as JSON (or a JSON file), or generated by reasoning-gym."""
    if spec is None:
        if task == "file":
            raise ValueError("give the item to score against: --item JSON, or --task with --seed/--index")
        return generated_item(task, seed, index, options)
    text = spec
    if not spec.lstrip().startswith("{"):
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"--item: {spec!r} is neither a JSON object nor an existing file")
        text = path.read_text(encoding="utf-8")
    entry = json_safe(parse_json(text, "--item", dict))
    if entry.get("answer") is None:
        raise ValueError("--item: missing key 'answer' (the reference answer)")
    metadata = entry.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"--item: 'metadata' must be an object, got {type(metadata).__name__}")
    prompt = str(entry.get("question", entry.get("prompt", "")))
    return PoolItem(id=index, prompt=prompt, answer=str(entry["answer"]), metadata=metadata,
                    entry=None if task == "file" else entry)


def generated_item(task: str, seed: int, index: int, options: dict) -> PoolItem:
    """Item `index` of the task generated with `seed`, as a reasoning-gym pool would hold it."""
    import reasoning_gym

    if task not in reasoning_gym.factory.DATASETS:
        raise ValueError(f"unknown task {task!r}: `rollwise tasks` lists the reasoning-gym tasks")
    if index < 0:
        raise ValueError(f"--index must be >= 0, got {index}")
    try:
        dataset = reasoning_gym.create_dataset(task, size=index + 1, seed=seed, **options)
        entry = json_safe(dataset[index])
    except Exception as exc:  # reasoning-gym raises TypeError, AssertionError, ... for bad options
        raise ValueError(f"reasoning-gym task {task!r} with options {options}: {exc}") from exc
    return PoolItem(id=index, prompt=entry["question"], answer=str(entry["answer"]),
                    metadata=entry.get("metadata", {}), entry=entry)


def read_answers(source: str) -> list[tuple[str | None, object]]:
    """(answer, id) per line. Bytes that are not UTF-8 survive as surrogates, which the guard rejects."""
    if source == "-":
        stream = getattr(sys.stdin, "buffer", None)
        data = stream.read() if stream is not None else sys.stdin.read().encode("utf-8", "surrogateescape")
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"{source}: no such file of answers")
        data = path.read_bytes()
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [parse_line(line.removesuffix("\r")) for line in lines]


def parse_line(line: str) -> tuple[str | None, object]:
    """A JSONL record {"answer": ..., "id": ...} when the line is one, else the raw line."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeEncodeError):
            record = None
        if isinstance(record, dict) and "answer" in record:
            answer = record["answer"]
            return (answer if answer is None or isinstance(answer, str) else json.dumps(answer)), record.get("id")
    return line, None
