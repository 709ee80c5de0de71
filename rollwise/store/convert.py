"""`rollwise convert-checkpoint RUN_DIR`: old pickle checkpoints (`step-NNNNNN.pt`) to the safe format.

Old checkpoints are pickles, and loading a pickle can run any code it names. This command first
loads each with torch's restricted loader (`weights_only=True`, plus the numpy types rollwise's
states hold), which runs no code; a file that needs more is refused unless `--trust-pickle` is given,
which unpickles it fully: pass it only for files you made yourself. Each converted file is written
as `step-NNNNNN.safetensors` (`rollwise.store.checkpoint`) and the old one renamed to `*.pt.converted`.

    rollwise convert-checkpoint runs/old-run                 # restricted loading only
    rollwise convert-checkpoint runs/old-run --trust-pickle  # I made these files
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rollwise.store import checkpoint as ckpt


def _numpy_globals() -> list:
    """The numpy types old checkpoints hold (arrays, dtypes, scalars), for torch's restricted loader;
    `_reconstruct` under both module names numpy has used, so that files from numpy 1 load too."""
    import numpy as np
    from numpy._core.multiarray import _reconstruct, scalar

    types = [np.ndarray, np.dtype, _reconstruct, scalar, (_reconstruct, "numpy.core.multiarray._reconstruct"),
             (scalar, "numpy.core.multiarray.scalar")]
    kinds = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
             "float64")
    return types + [type(np.dtype(k)) for k in kinds] + [np.dtype(k).type for k in kinds]


def load_old(path: Path, trust_pickle: bool) -> dict:
    """An old checkpoint's state: restricted loading first, full unpickling only when trusted."""
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the restricted loader raises UnpicklingError and others
        if not trust_pickle:
            raise ckpt.CheckpointError(
                f"{path}: the restricted loader refused it ({str(exc).splitlines()[0][:200]}); if you made this "
                "file, run again with --trust-pickle (that unpickles it: it can run code)") from None
    return torch.load(path, map_location="cpu", weights_only=False)


def convert(run_dir: str | Path, trust_pickle: bool = False, log=print) -> list[Path]:
    """Convert every old checkpoint of a run directory; returns the new files."""
    written = []
    for step, path in ckpt.list_checkpoints(run_dir):
        if path.suffix != ".pt":
            continue
        state = load_old(path, trust_pickle)
        if not isinstance(state, dict) or "step" not in state:
            raise ckpt.CheckpointError(f"{path}: not a rollwise checkpoint (no step)")
        target = path.with_suffix(ckpt.SUFFIX)
        ckpt.write_state(state, target)
        os.replace(path, path.with_name(path.name + ".converted"))
        log(f"rollwise: converted {path} -> {target}")
        written.append(target)
    if not written:
        log(f"rollwise: no old-format checkpoint in {ckpt.checkpoint_dir(run_dir)}")
    return written


def _run(args: argparse.Namespace) -> int:
    try:
        convert(args.run_dir, args.trust_pickle)
    except ckpt.CheckpointError as exc:
        print(f"rollwise: error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("convert-checkpoint", help="convert a run's old pickle checkpoints to the safe format",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("run_dir", help="the run directory whose checkpoints/step-*.pt to convert")
    p.add_argument("--trust-pickle", action="store_true",
                   help="unpickle files the restricted loader refuses (only for files you made: it can run code)")
    p.set_defaults(func=_run)


if __name__ == "__main__":
    from rollwise.cli import main

    raise SystemExit(main(["convert-checkpoint", *sys.argv[1:]]))
