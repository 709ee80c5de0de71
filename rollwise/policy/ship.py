"""Rebuild or check the warmed-up tiny policies that ship with the package (rollwise.policy.shipped).

Rebuild them on purpose only: it changes every built-in run's starting policy.

    python -m rollwise.policy.ship rebuild                 # warm up each preset afresh, in a scratch cache
    python -m rollwise.policy.ship rebuild --from-cache ~/.cache/rollwise   # or copy existing warm-ups
    python -m rollwise.policy.ship check                   # the shipped files against the manifest
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from pathlib import Path

from rollwise.policy.shipped import FILES, MANIFEST, PRESETS, SHIPPED_DIR, WEIGHTS, check, manifest, sha256


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
    parser = argparse.ArgumentParser(prog="python -m rollwise.policy.ship", description=__doc__.split("\n\n")[0])
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
