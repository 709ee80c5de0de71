"""Accounting and metric logging: what every step cost, and where it went.

`Accounting` keeps cumulative counts (prompts, rollouts, generated tokens, seconds) as plain numbers
so they checkpoint and resume exactly. `MetricsLog` appends one JSON object per step to
`metrics.jsonl`; on resume it cuts the file back to the byte offset recorded in the checkpoint, so
rows written after the checkpoint are written again exactly once. Its numeric values also go to the
backends `report_to` names, comma-separated: TensorBoard (`tensorboard`, when installed), Weights &
Biases (`wandb`), both (`tensorboard,wandb`) or neither (`none`).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from rollwise.store import safefiles


@dataclass
class Accounting:
    total_prompts: int = 0
    total_rollouts: int = 0
    total_tokens: int = 0  # generated tokens (partial rollouts: suffixes only)
    total_prefix_tokens: int = 0  # cached prefix tokens trained on but not generated (RPO)
    eval_rollouts_total: int = 0
    eval_tokens_total: int = 0
    seconds: float = 0.0
    wall_seconds: float = 0.0

    def add_training(self, prompts: int, rollouts: int, tokens: int, prefix_tokens: int = 0) -> None:
        self.total_prompts += prompts
        self.total_rollouts += rollouts
        self.total_tokens += tokens
        self.total_prefix_tokens += prefix_tokens

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


REPORT_TO = ("tensorboard", "wandb", "none")


def report_backends(report_to: str) -> list[str]:
    """The logging backends of a `report_to` value: a comma-separated list of names, or `none`.

    >>> report_backends("tensorboard, wandb"), report_backends("none")
    (['tensorboard', 'wandb'], [])
    """
    names = list(dict.fromkeys(n.strip() for n in str(report_to).split(",") if n.strip()))
    unknown = [n for n in names if n not in REPORT_TO]
    if not names or unknown or ("none" in names and len(names) > 1):
        raise ValueError(f"report_to={report_to!r}: expected a comma-separated list of tensorboard, wandb "
                         "(e.g. tensorboard,wandb), or none alone")
    return [n for n in names if n != "none"]


def numeric_items(row: dict) -> dict:
    """The plotted part of a row: numbers (not booleans), without the step itself."""
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}


class WandbBackend:
    """Mirrors metric rows to a Weights & Biases run (`pip install 'rollwise[wandb]'`).

    The run lives under `directory` (OUT_DIR/wandb) and keeps its id in OUT_DIR/wandb_id, so a resumed
    rollwise run continues the same W&B run. W&B's own variables apply: WANDB_PROJECT (default
    `rollwise`), WANDB_ENTITY, WANDB_RUN_GROUP, WANDB_MODE=offline (then `wandb sync` uploads). W&B steps
    only go forward: after a resume, rows of steps it already has are not replaced.
    """

    def __init__(self, out_dir: str | Path, config: dict | None = None) -> None:
        try:
            import wandb
        except ImportError:
            raise RuntimeError("report_to=wandb needs the wandb package: pip install 'rollwise[wandb]' "
                               "(or report_to=tensorboard / none)") from None
        import os
        import secrets

        out_dir = Path(out_dir)
        id_file = out_dir / "wandb_id"
        saved = safefiles.read_bytes(id_file, limit=64).decode(errors="replace").strip() \
            if safefiles.check_entry(id_file) else ""
        run_id = saved if saved.isalnum() and len(saved) <= 64 else secrets.token_hex(4)
        safefiles.write_atomic(id_file, (run_id + "\n").encode())
        safefiles.safe_dir(out_dir / "wandb")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "rollwise"), name=out_dir.name, id=run_id,
                              resume="allow", dir=str(out_dir), config=config or {}, reinit="create_new")

    def write(self, row: dict) -> None:
        self.run.log(numeric_items(row), step=int(row["step"]))

    def close(self) -> None:
        self.run.finish()


class MetricsLog:
    def __init__(self, path: str | Path, tensorboard_dir: str | Path | None = None, report_to: str = "tensorboard",
                 run_config: dict | None = None):
        backends = report_backends(report_to)
        self.path = Path(path)
        self.writer = None
        self.wandb = WandbBackend(self.path.parent, run_config) if "wandb" in backends else None
        if tensorboard_dir is not None and "tensorboard" in backends:
            safefiles.check_entry(tensorboard_dir, directory=True)  # the writer creates files in it
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
        safefiles.truncate(self.path, offset)  # never through a link: it would empty the link's target

    def offset(self) -> int:
        return safefiles.size(self.path)

    def write(self, row: dict) -> None:
        row = {k: _clean(v) for k, v in row.items()}
        with safefiles.open_append(self.path) as handle:
            handle.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in numeric_items(row).items():
                self.writer.add_scalar(key, value, row["step"])
        if self.wandb is not None:
            self.wandb.write(row)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.close()


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of a metrics.jsonl; a truncated last line (a killed writer) is ignored."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows
