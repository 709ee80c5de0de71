"""Warmed-up tiny policies shipped with the package, so that every machine starts from the same weights.

The tiny model's warm-up (`rollwise.policy.warmup`) is deterministic on one processor but not across
processors: float rounding differs, the warm-up stops at its accuracy target on another step, and RL
starts from another policy (one new user's warm-up stopped at step 725 where the README's stopped at
375). So the warm-ups of the built-in presets (`sums`, the default run, and `scratchpad`) ship inside
the package under `rollwise/policy/weights/NAME/` (an ordinary Hugging Face model directory plus
rollwise.json), listed in `manifest.json` with the sha256 of their weights and every setting that
shapes them (`rollwise.policy.models.TINY_KEYS`). `rollwise.policy.models.ensure_tiny` uses a shipped policy whenever
the run's tiny-model settings hash to its cache key, and warms up (and caches) as before otherwise.

Rebuild or check them with `python -m rollwise.policy.ship` (rollwise.policy.ship).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
FILES = ("config.json", "generation_config.json", WEIGHTS, "rollwise.json")  # what the warm-up writes
PRESETS = ("sums", "scratchpad")


class ShippedWeightsError(RuntimeError):
    """A shipped policy's weights do not match the manifest (a damaged or partial install)."""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest(root: Path = SHIPPED_DIR) -> dict:
    """{"policies": {name: {"cache_key", "sha256", "settings", "warmup", "built_with"}}}; empty when absent."""
    path = Path(root) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {"policies": {}}


def find(cache_key: str, root: Path = SHIPPED_DIR) -> Path | None:
    """The shipped policy directory whose settings hash to cache_key (checked against its sha256), or None."""
    for name, entry in manifest(root)["policies"].items():
        if entry["cache_key"] == cache_key:
            directory = Path(root) / name
            check(name, entry, directory)
            return directory
    return None


def check(name: str, entry: dict, directory: Path) -> None:
    missing = [f for f in FILES if not (directory / f).is_file()]
    if missing:
        raise ShippedWeightsError(f"shipped tiny policy {name!r}: {', '.join(missing)} missing from {directory}; "
                                  "reinstall rollwise (or rebuild: python -m rollwise.policy.ship rebuild)")
    found = sha256(directory / WEIGHTS)
    if found != entry["sha256"]:
        raise ShippedWeightsError(f"shipped tiny policy {name!r}: {directory / WEIGHTS} has sha256 {found}, the "
                                  f"manifest says {entry['sha256']}; reinstall rollwise (or rebuild them)")
