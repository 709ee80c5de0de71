"""Calls whose result depends on Python's hash randomisation, made deterministic by a fixed PYTHONHASHSEED.

Some reasoning-gym generators iterate over sets of strings, so the items they produce depend on the
process's hash seed (`polynomial_multiplication` names its variables that way): a pool built from
them changed from one process to the next, so `--resume` of such a run was refused (its pool's
content hash differed) and two seeds of a comparison trained on different data. rollwise runs such
a call in a child process with PYTHONHASHSEED=0 (or in place, when this process already has it) and
reads the result back as JSON.

    >>> call_with_fixed_hash_seed("rollwise.data.hashseed", "_demo", ["a", "b", "c"]) == _demo(["a", "b", "c"]) \\
    ...     or not fixed()
    True
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from rollwise.data.jsonl import DataError


def fixed() -> bool:
    """Whether this process hashes strings with seed 0 (the seed rollwise fixes)."""
    return os.environ.get("PYTHONHASHSEED") == "0" and not sys.flags.hash_randomization


def call_with_fixed_hash_seed(module: str, function: str, *args):
    """`module.function(*args)` under PYTHONHASHSEED=0; arguments and result must be JSON values."""
    if fixed():
        return getattr(importlib.import_module(module), function)(*args)
    root = str(Path(__file__).resolve().parents[2])  # the directory holding the rollwise package
    env = {**os.environ, "PYTHONHASHSEED": "0",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    request = json.dumps({"module": module, "function": function, "args": list(args)})
    done = subprocess.run([sys.executable, "-m", "rollwise.data.hashseed"], input=request.encode(), env=env,
                          capture_output=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise DataError(f"{module}.{function} with a fixed hash seed failed: {tail[0][:300]}")
    return json.loads(done.stdout)


def _demo(names: list[str]) -> list[str]:
    return list(set(names))


def main() -> int:
    request = json.loads(sys.stdin.read())
    out, sys.stdout = sys.stdout, sys.stderr  # what the call prints must not mix with the result
    result = getattr(importlib.import_module(request["module"]), request["function"])(*request["args"])
    out.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
