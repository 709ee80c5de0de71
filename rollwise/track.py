"""Accounting and metric logging: what every step cost, and where it went.

`Accounting` keeps cumulative counts (prompts, rollouts, generated tokens, seconds) as plain numbers
so they checkpoint and resume exactly. `MetricsLog` appends one JSON object per step to
`metrics.jsonl`; on resume it cuts the file back to the byte offset recorded in the checkpoint, so
rows written after the checkpoint are written again exactly once.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Accounting:
    total_prompts: int = 0
    total_rollouts: int = 0
    total_tokens: int = 0
    eval_rollouts_total: int = 0
    eval_tokens_total: int = 0
    seconds: float = 0.0
    wall_seconds: float = 0.0

    def add_training(self, prompts: int, rollouts: int, tokens: int) -> None:
        self.total_prompts += prompts
        self.total_rollouts += rollouts
        self.total_tokens += tokens

    def add_evaluation(self, rollouts: int, tokens: int) -> None:
        self.eval_rollouts_total += rollouts
        self.eval_tokens_total += tokens

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class Timer:
    """Accumulates seconds per phase: `with timer("gen"): ...`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def get(self, phase: str) -> float:
        return self.seconds.get(phase, 0.0)


def _clean(value):
    """JSON has no NaN/inf: write them as null rather than produce an unreadable file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    def __init__(self, path: str | Path, tensorboard_dir: str | Path | None = None):
        self.path = Path(path)
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(tensorboard_dir))
            except ImportError:  # tensorboard not installed: metrics.jsonl is the record
                self.writer = None

    def truncate_to(self, offset: int) -> None:
        """Cut the log back to `offset` bytes (a checkpoint's); a shorter log is an error, never NUL padding."""
        size = self.offset()
        if size < offset:
            raise ValueError(f"{self.path} has {size} bytes but the checkpoint recorded {offset}: the metrics "
                             "log was truncated or replaced after the checkpoint; restore it, or start a new run")
        if self.path.exists():
            with open(self.path, "r+b") as handle:
                handle.truncate(offset)

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def write(self, row: dict) -> None:
        row = {k: _clean(v) for k, v in row.items()}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                    self.writer.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of a metrics.jsonl; a truncated last line (a killed writer) is ignored."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows
