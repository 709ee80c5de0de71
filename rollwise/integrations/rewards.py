"""rollwise's guarded verifiers as reward functions for Hugging Face TRL trainers.

TRL calls a reward function with the prompts, the completions and every other dataset column as
keyword lists (one entry per completion). `reward_function(task)` returns such a callable: it reads
the reference answer from the `answer` column, extracts the completion's final answer the way
rollwise does for chat models (last <answer>...</answer>, else the last number), and scores it
behind the verifier guard (rollwise.verify.guard: pre-check, in-process only for rollwise's own
eval-free scorers, sandboxed workers with time limits for everything else). Completions are
untrusted model output; no scorer runs them in the trainer's process unless it is one of ours.

    from trl import GRPOTrainer
    from rollwise.integrations.rewards import reward_function

    trainer = GRPOTrainer(model, reward_funcs=reward_function("basic_arithmetic"), train_dataset=ds, ...)

`reward="acc"` (default) returns 1.0 for a verified-correct answer and 0.0 otherwise, the signal
rollwise's selectors count as a success; `reward="score"` returns the verifier's shaped score in
[0, 1] (a success is still a score of 1). The guard's counters (timeouts, errors, rejected answers,
...) reach TRL's logs as `rollwise/verify_*` through TRL's `log_metric`.
"""

from __future__ import annotations

import json

from rollwise.data.pool import PoolItem
from rollwise.verify.extract import extract_answer, last_number
from rollwise.verify.guard import COUNTERS, GuardedVerifier
from rollwise.verify.verifiers import build_verifier

REWARDS = ("acc", "score")


def message_text(value, role: str | None = None) -> str:
    """Plain text of a TRL prompt or completion: a string, or a conversation (list of messages).

    >>> message_text([{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}], "assistant")
    '4'
    """
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for message in value:
            if not isinstance(message, dict) or (role is not None and message.get("role") != role):
                continue
            content = message.get("content")
            if isinstance(content, list):  # multimodal content blocks: keep the text ones
                content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
            parts.append(content if isinstance(content, str) else "")
        return "\n".join(parts)
    raise TypeError(f"expected text or a list of chat messages, got {type(value).__name__}")


def metadata_dict(value) -> dict:
    """A row's metadata: a dict, or a JSON object in a string (verl_data and the TRL example write it so); else {}."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}


def _as_id(value) -> int:
    """The row's `id` for the guard's messages; -1 where the dataset's ids are not integers."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


class VerifierReward:
    """A TRL reward function scoring completions with a rollwise verifier behind the guard.

    Build it with `reward_function`. Its `__name__` is what TRL logs the reward under
    (`rewards/rollwise_<verifier>/mean`). `close()` stops the guard's workers (also on garbage
    collection).
    """

    def __init__(self, task: str, verifier: str = "auto", reward: str = "acc", options: dict | None = None,
                 answer_column: str = "answer", fallback_last_number: bool = True, workers: int = 2,
                 timeout: float = 5.0, memory_mb: int = 1024) -> None:
        if reward not in REWARDS:
            raise ValueError(f"reward={reward!r}: expected one of {', '.join(REWARDS)}")
        self.guard = GuardedVerifier(build_verifier(task, verifier, options), workers, timeout, memory_mb)
        self.task = task
        self.reward, self.answer_column, self.fallback_last_number = reward, answer_column, fallback_last_number
        self.__name__ = f"rollwise_{self.guard.name}".replace(":", "_")

    def answer(self, completion) -> str | None:
        """The final answer of one completion (None when it gives none)."""
        text = message_text(completion, "assistant")
        found = extract_answer(text)
        if found is None and self.fallback_last_number:
            found = last_number(text)
        return found

    def __call__(self, prompts, completions, **columns) -> list[float]:
        if self.answer_column not in columns:
            present = sorted(k for k in columns if k not in ("trainer_state", "log_extra", "log_metric",
                                                               "completion_ids", "environments"))
            raise KeyError(f"reward function {self.__name__} needs the reference answer in the dataset column "
                           f"{self.answer_column!r}; the dataset has {present}. Pass answer_column= to "
                           "reward_function, or add the column")
        references = columns[self.answer_column]
        ids = columns.get("id") or [-1] * len(completions)
        metadata = columns.get("metadata") or [None] * len(completions)
        items = [PoolItem(_as_id(pid), message_text(p, "user"), str(ref), metadata_dict(meta))
                 for pid, p, ref, meta in zip(ids, prompts, references, metadata, strict=True)]
        scores = self.guard.score_batch([self.answer(c) for c in completions], items)
        log_metric = columns.get("log_metric")
        if log_metric is not None:
            counts = self.guard.pop_counts()
            for name in COUNTERS:
                log_metric(f"rollwise/verify_{name}", float(counts[name]))
        if self.reward == "score":
            return [float(s.reward) for s in scores]
        return [1.0 if s.acc else 0.0 for s in scores]

    def score_one(self, completion, reference, prompt_id=-1, prompt: str = "", metadata: dict | None = None):
        """The guard's `Score` of one completion against `reference` (for trainers that score one at a time: verl)."""
        item = PoolItem(_as_id(prompt_id), prompt, str(reference), metadata_dict(metadata))
        return self.guard.score_batch([self.answer(completion)], [item])[0]

    def close(self) -> None:
        self.guard.close()


def reward_function(task: str, verifier: str = "auto", reward: str = "acc", **kwargs) -> VerifierReward:
    """A TRL reward function for a reasoning-gym task (or "file" data with verifier "math"/"exact").

    task, verifier: as `rollwise train --task/--verifier` (rollwise.verify.verifiers.build_verifier);
    reward: "acc" (0/1 verified) or "score" (the verifier's shaped score); further keyword
    arguments go to `VerifierReward` (options, answer_column, fallback_last_number, workers,
    timeout, memory_mb).

    >>> f = reward_function("basic_arithmetic")
    >>> f(prompts=["3 + 4 ="] * 2, completions=["<answer>7</answer>", "8"], answer=["7", "7"])
    [1.0, 0.0]
    """
    return VerifierReward(task, verifier, reward, **kwargs)
