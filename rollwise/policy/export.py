"""Export a trained policy as a Hugging Face model directory.

`save_policy(policy, DIR)` writes one of three layouts, always complete or not at all (it writes
`DIR.tmp`, then renames it into place; an existing export is replaced only once the new one is whole):

    full model                 DIR/  config.json, model.safetensors, generation_config.json,
                                     the tokenizer files (the tiny model's: its codec as a
                                     transformers tokenizer, plus rollwise.json)
    LoRA, merge_lora=True      DIR/  the same, with the adapter merged into the weights,
                               DIR/adapter/  the adapter alone (peft: adapter_config.json, weights)
    LoRA, merge_lora=False     DIR/base/     the untrained base model (a full-model layout)
                               DIR/adapter/  the adapter; DIR/README.md says how to load them

The first two load with `AutoModelForCausalLM.from_pretrained(DIR)` and with `rollwise --model DIR`.
The unmerged layout has no config.json at its root on purpose: a plain `from_pretrained(DIR)` fails
loudly instead of silently loading the base without the adapter. `rollwise --model DIR` loads it
(base, then the adapter merged in: `load_adapter_export`); with peft:

    base = AutoModelForCausalLM.from_pretrained("DIR/base")
    model = PeftModel.from_pretrained(base, "DIR/adapter")

A model loaded from a GGUF file (smollm2) is exported as an ordinary safetensors directory with
its tokenizer. The merge is computed layer by layer from the base weights and the LoRA factors
(W + scaling * B @ A, peft's own delta), so the policy being exported is never modified; the merged
weights are gathered in CPU memory, so an accelerator holds one extra layer at a time, not a copy.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from rollwise.policy import tiny_codecs
from rollwise.store import safefiles

ADAPTER_DIR = "adapter"
BASE_DIR = "base"


def save_policy(policy, directory: Path, merge_lora: bool = False) -> Path:
    """Write policy (a `rollwise.policy.models.Policy`) as a model directory at `directory`; returns it.

    merge_lora only matters for a LoRA policy: True writes the merged full model (plus `adapter/`),
    False writes `base/` and `adapter/` (see the module docstring for both layouts).
    """
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    for entry in (directory, tmp, directory.with_name(directory.name + ".old")):
        safefiles.check_entry(entry, directory=True)  # a link there would move or delete what it points to
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted export: never a finished one
    tmp.mkdir(parents=True)
    try:
        _write(policy, tmp, merge_lora)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _move_into_place(tmp, directory)
    return directory


def is_adapter_export(path: Path) -> bool:
    """Whether path is an unmerged LoRA export (`base/` + `adapter/`, no model at the root)."""
    path = Path(path)
    return (path / ADAPTER_DIR / "adapter_config.json").is_file() and (path / BASE_DIR).is_dir() \
        and not (path / "config.json").is_file()


def load_adapter_export(path: Path, dtype: str, load_base):
    """(model, codec) of an unmerged LoRA export: `load_base(DIR/base, dtype)`, adapter merged in.

    The merged model is the trained policy as a plain transformers model, so it trains, samples and
    exports like any other (a new LoRA, when asked, goes on top of it).
    """
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ImportError(f"{path} is a LoRA adapter export: loading it needs `pip install peft`") from exc
    base, codec = load_base(Path(path) / BASE_DIR, dtype)
    return PeftModel.from_pretrained(base, Path(path) / ADAPTER_DIR).merge_and_unload(), codec


# ---------------------------------------------------------------------------- writing


def _write(policy, tmp: Path, merge_lora: bool) -> None:
    model = policy.model
    if not _is_peft(model):
        model.save_pretrained(tmp)
        _save_codec(policy, tmp)
        return
    model.save_pretrained(tmp / ADAPTER_DIR)  # peft: adapter_config.json + adapter_model.safetensors
    target = tmp if merge_lora else tmp / BASE_DIR
    base = model.get_base_model()
    base.save_pretrained(target, state_dict=plain_state_dict(model, merge=merge_lora))
    _save_codec(policy, target)
    if not merge_lora:
        (tmp / "README.md").write_text(_ADAPTER_README.format(source=Path(policy.source).name))


def _save_codec(policy, directory: Path) -> None:
    codec = policy.codec
    tokenizer = getattr(codec, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    elif hasattr(codec, "layout") and hasattr(codec, "name"):  # the tiny model's codecs
        # The name only: an absolute path would point outside the directory (and to another machine's disk).
        tiny_codecs.save_codec_info(directory, codec, {"exported_from": Path(policy.source).name})
        _save_tiny_tokenizer(codec, directory)
    else:
        raise TypeError(f"cannot export codec {type(codec).__name__}: expected a codec with a Hugging Face "
                        "`tokenizer` (ChatCodec) or one of the tiny model's codecs")


def _save_tiny_tokenizer(codec, directory: Path) -> None:
    """The codec as a transformers tokenizer, and generation defaults that fit its answers, so that
    `AutoTokenizer` / `pipeline("text-generation")` use the export without rollwise (docs/tiny-model.md)."""
    from transformers import GenerationConfig

    from rollwise.policy.tokenizer import save_tokenizer

    save_tokenizer(codec, directory)
    generation = GenerationConfig.from_pretrained(directory)
    # Prompt and longest answer: pipeline("text-generation") honours a max_length the model sets (its own
    # default is 256 new tokens); rollwise's engine and TRL pass their own limits.
    generation.max_length = codec.max_positions
    generation.save_pretrained(directory)


def _move_into_place(tmp: Path, directory: Path) -> None:
    """Rename tmp to directory; an existing directory is moved aside first and deleted only afterwards."""
    if not directory.exists():
        os.replace(tmp, directory)
        return
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def _is_peft(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


# ---------------------------------------------------------------------------- LoRA weights


def plain_state_dict(peft_model, merge: bool) -> dict[str, torch.Tensor]:
    """The base model's state dict under its own key names, without the LoRA modules; with merge,
    each adapted weight is W + delta (peft's `get_delta_weight`: scaling * B @ A).

    Unadapted tensors are the model's own (not copied); each merged weight is a new CPU tensor.
    """
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model()
    merged = {}
    if merge:
        for name, module in base.named_modules():
            if isinstance(module, LoraLayer):
                merged[f"{name}.weight"] = _merged_weight(name, module)
    state = {}
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        if "modules_to_save" in key or "original_module" in key:
            raise ValueError(f"{key}: exporting peft `modules_to_save` is not supported; rollwise's LoRA "
                             "(apply_lora) adapts linear layers only")
        plain = key.replace(".base_layer.", ".")
        state[plain] = merged.get(plain, value)
    return state


def _merged_weight(name: str, module) -> torch.Tensor:
    if getattr(module, "merged", False):
        raise ValueError(f"{name}: the adapter is already merged into the weights; unmerge_adapter() first")
    weight = module.get_base_layer().weight
    delta = torch.zeros_like(weight)
    for adapter in module.active_adapters:
        if adapter not in module.lora_A:
            continue
        if adapter in getattr(module, "lora_variant", {}) or getattr(module, "lora_bias", {}).get(adapter):
            raise ValueError(f"{name}: only plain LoRA merges here (no DoRA or LoRA bias); "
                             "export with merge_lora=False and merge with peft")
        delta += module.get_delta_weight(adapter).to(weight.dtype)
    return (weight.detach() + delta).cpu().contiguous()


_ADAPTER_README = """# rollwise export: LoRA adapter (not merged)

Trained from `{source}`. This directory holds the base model (`base/`) and the trained LoRA adapter
(`adapter/`); the trained policy is base + adapter. There is deliberately no model at the top level.

    rollwise train --model THIS_DIR ...          # loads base/ and merges adapter/ in

    from transformers import AutoModelForCausalLM
    from peft import PeftModel
    base = AutoModelForCausalLM.from_pretrained("THIS_DIR/base")
    model = PeftModel.from_pretrained(base, "THIS_DIR/adapter")   # .merge_and_unload() for a plain model

The tokenizer (for the tiny model also its codec, rollwise.json) is in `base/`.
"""
