"""The tiny model's codecs by name, and the codec file an exported or cached tiny model carries.

    answer      the answer only (rollwise.policy.tiny.TinyCodec)
    scratchpad  the running partial sums, then the answer (rollwise.policy.scratchpad.ScratchpadCodec)

Both are laid out for the task's options; a model directory's `rollwise.json` names its codec and
layout, so `load_codec` rebuilds exactly the codec it was trained with.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rollwise.policy.scratchpad import ScratchpadCodec, ScratchpadLayout
from rollwise.policy.tiny import CODEC_FILE, TinyCodec, TinyLayout

CODECS = {"answer": (TinyCodec, TinyLayout), "scratchpad": (ScratchpadCodec, ScratchpadLayout)}


def make_codec(name: str, options: dict):
    """The tiny model's codec `name` (answer, scratchpad) laid out for the task options."""
    if name not in CODECS:
        raise ValueError(f"tiny_codec={name!r}: expected one of {', '.join(CODECS)}")
    codec, layout = CODECS[name]
    return codec(layout.for_task(options))


def save_codec_info(directory: Path, codec, info: dict) -> None:
    (directory / CODEC_FILE).write_text(json.dumps(
        {"codec": "tiny", "layout_kind": codec.name, "layout": asdict(codec.layout), **info}, indent=1))


def load_codec(directory: Path):
    info = json.loads((Path(directory) / CODEC_FILE).read_text())
    codec, layout = CODECS[info.get("layout_kind", "answer")]
    return codec(layout(**info["layout"]))


def is_tiny_dir(directory: Path) -> bool:
    path = Path(directory) / CODEC_FILE
    return path.is_file() and json.loads(path.read_text()).get("codec") == "tiny"
