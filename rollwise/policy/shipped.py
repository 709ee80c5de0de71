"""Warmed-up tiny policies shipped with the package, so that every machine starts from the same weights.

The tiny model's warm-up (`rollwise.policy.warmup`) is deterministic on one processor but not across
processors: float rounding differs, the warm-up stops at its accuracy target on another step, and RL
starts from another policy (one new user's warm-up stopped at step 725 where the README's stopped at
375). So the warm-ups of the built-in presets (`sums`, the default run, and `scratchpad`) ship inside
the package under `rollwise/policy/weights/NAME/` (an ordinary Hugging Face model directory plus
rollwise.json), listed in `manifest.json` with the sha256 of their weights and every setting that
shapes them (`rollwise.policy.models.TINY_KEYS`). `rollwise.policy.models.ensure_tiny` uses a shipped policy whenever
the run's tiny-model settings hash to its cache key, and warms up (and caches) as before otherwise.

Rebuild them (on purpose: it changes every built-in run's starting policy) with

    python -m rollwise.policy.shipped rebuild                 # warm up each preset afresh, in a scratch cache
    python -m rollwise.policy.shipped rebuild --from-cache ~/.cache/rollwise   # or copy existing warm-ups
    python -m rollwise.policy.shipped check                   # the shipped files against the manifest
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import tempfile
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
                                  "reinstall rollwise (or rebuild: python -m rollwise.policy.shipped rebuild)")
    found = sha256(directory / WEIGHTS)
    if found != entry["sha256"]:
        raise ShippedWeightsError(f"shipped tiny policy {name!r}: {directory / WEIGHTS} has sha256 {found}, the "
                                  f"manifest says {entry['sha256']}; reinstall rollwise (or rebuild them)")


# ---------------------------------------------------------------------------- rebuilding

def entry_for(cfg, directory: Path) -> dict:
    """The manifest entry of a built tiny model directory for cfg."""
    import torch
    import transformers

    from rollwise.policy.models import TINY_FORMAT, TINY_KEYS, tiny_cache_key

    info = json.loads((Path(directory) / "rollwise.json").read_text())
    report = info.get("warmup", {})
    return {"cache_key": tiny_cache_key(cfg), "sha256": sha256(Path(directory) / WEIGHTS), "format": TINY_FORMAT,
            "settings": {k: getattr(cfg, k) for k in TINY_KEYS},
            "warmup": {k: report.get(k) for k in ("steps", "best_step", "best_greedy_acc")},
            "built_with": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "processor": processor_name(), "threads": cfg.threads}}


def processor_name() -> str:
    """The CPU model (/proc/cpuinfo on Linux), else what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def rebuild(presets=PRESETS, root: Path = SHIPPED_DIR, from_cache: Path | None = None, log=print) -> dict:
    """Warm up each preset's tiny model with rollwise's own code (or take it from a cache directory) and
    write it, with the manifest, under root. Returns the manifest."""
    from rollwise.config import RunConfig
    from rollwise.policy.models import ensure_tiny

    root = Path(root)
    entries = manifest(root)["policies"]
    with tempfile.TemporaryDirectory(prefix="rollwise-shipped-") as scratch:
        for name in presets:
            cfg = RunConfig.from_sources(preset=name, overrides={"cache_dir": str(from_cache or scratch)})
            built = ensure_tiny(cfg, log, use_shipped=False)
            target = root / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for file in FILES:
                shutil.copyfile(built / file, target / file)
            entries[name] = entry_for(cfg, target)
            log(f"{name}: {target} (sha256 {entries[name]['sha256']}, warm-up step {entries[name]['warmup']['best_step']})")
    data = {"about": "warmed-up tiny policies of the built-in presets (rollwise.policy.shipped)", "policies": entries}
    (root / MANIFEST).write_text(json.dumps(data, indent=1) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rollwise.policy.shipped", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("rebuild", help="warm up the presets' tiny models and ship them (changes every "
                                           "built-in run's starting policy)")
    build.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    build.add_argument("--from-cache", type=Path, default=None,
                       help="a tiny-model cache (e.g. ~/.cache/rollwise) to take existing warm-ups from")
    build.add_argument("--root", type=Path, default=SHIPPED_DIR, help=argparse.SUPPRESS)
    sub.add_parser("check", help="check the shipped weights against the manifest")
    args = parser.parse_args(argv)
    if args.command == "rebuild":
        rebuild(args.presets, args.root, args.from_cache.expanduser() if args.from_cache else None)
        return 0
    for name, entry in manifest()["policies"].items():
        check(name, entry, SHIPPED_DIR / name)
        print(f"{name}: ok, sha256 {entry['sha256']}, cache key {entry['cache_key']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
