"""Generation engines: turn prompts into sampled completions.

The interface is deliberately small so that a vLLM engine can replace the transformers one:
a request is a prompt (token ids), an optional prefix to continue from (partial rollouts, RPO), its
own sample count n (groups of different sizes, GVM) and optionally its own token limit (RPO's suffix
budgets). `HFEngine` batches all samples of all requests through `model.generate`, left-padded, and
cuts each completion after its first EOS and at its own limit.

Sampling is on-policy by construction: `generate` runs with a GenerationConfig that rollwise builds
from `SamplingParams` alone (`sampling_config`), and the model's own `generation_config` (a
checkpoint's repetition_penalty, top_k, min_p, suppress_tokens, min_new_tokens, ...) is set aside
for the call, because the loss models none of those processors. docs/sampling.md has the details.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch


@dataclass(frozen=True)
class SamplingParams:
    """What the sampler does, and all it does: softmax(logits / temperature), optionally top-p truncated.

    The loss (`rollwise.algos.update.token_logprobs`) scores each sampled token with the full softmax at the
    same temperature. With top_p = 1 that is exactly the distribution sampled from (on-policy). With
    top_p < 1 the sampler draws from the renormalised nucleus, q(t) = p(t) / P(nucleus) for t in the
    nucleus and 0 outside, while the loss uses log p(t): the importance ratio is off by the constant
    log P(nucleus) per token and tokens outside the nucleus are never sampled, so the gradient is
    biased towards the nucleus. Use top_p = 1 for on-policy training (the default).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    greedy: bool = False


@dataclass(frozen=True)
class GenRequest:
    """Sample n continuations of prompt_ids + prefix_ids, each at most max_new_tokens long (None: the
    sampling parameters' limit). Engines must honour a request's limit exactly."""

    prompt_ids: tuple[int, ...]
    n: int
    prefix_ids: tuple[int, ...] = ()
    max_new_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"GenRequest: max_new_tokens={self.max_new_tokens} must be at least 1 (or None)")

    def limit(self, params: "SamplingParams") -> int:
        return params.max_new_tokens if self.max_new_tokens is None else self.max_new_tokens


@dataclass
class Sample:
    """One completion. `completion_ids` includes the EOS token when `finished`."""

    request: int
    prompt_ids: tuple[int, ...]
    prefix_ids: tuple[int, ...]
    completion_ids: list[int] = field(default_factory=list)
    finished: bool = False
    # The sampler's log-probability of each completion token, where the engine reports it (vLLM); the
    # update compares it with the policy's own (off-policy drift). None: not reported (HFEngine).
    logprobs: list[float] | None = None
    # Leading prefix tokens kept out of the loss: a replayed hint (rollwise.rollout.hints), which conditions the
    # sample like the prompt does. 0: the whole prefix (an RPO cached prefix) is in the loss, as published.
    masked_prefix: int = 0

    @property
    def generated_tokens(self) -> int:
        return len(self.completion_ids)


class Engine(Protocol):
    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[list[Sample]]:
        """Return, for each request, its n samples (in order)."""

    def sync_weights(self, model) -> None:
        """Make the engine sample from the current policy (a no-op when it shares the model)."""

    def close(self) -> None:
        """Release what the engine started (vLLM's engine processes); nothing for an in-process engine."""


class HFEngine:
    """Sampling with transformers `generate` on the training model itself (no weight copy)."""

    def __init__(self, model, eos_token_id: int, pad_token_id: int, batch_size: int = 512,
                 share_prefill: bool = False):
        self.model = model
        self.eos = eos_token_id
        self.pad = pad_token_id
        self.batch_size = batch_size
        # The n samples of a request share their input (prompt + prefix): encode it once and copy its
        # key/value cache n times instead of encoding it n times (same samples: tested).
        self.share_prefill = share_prefill

    def sync_weights(self, model) -> None:
        self.model = model

    def close(self) -> None:
        pass

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[list[Sample]]:
        flat = [(r, req) for r, req in enumerate(requests) for _ in range(req.n)]
        # Similar lengths batch together: less padding, fewer wasted positions.
        order = sorted(range(len(flat)), key=lambda i: len(flat[i][1].prompt_ids) + len(flat[i][1].prefix_ids))
        out: list[Sample | None] = [None] * len(flat)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            inputs = [list(flat[i][1].prompt_ids) + list(flat[i][1].prefix_ids) for i in chunk]
            limits = [flat[i][1].limit(params) for i in chunk]
            owners = [flat[i][0] for i in chunk]
            for i, ids, limit in zip(chunk, self._generate_batch(inputs, params, limits, owners), limits):
                r, req = flat[i]
                completion, finished = self._cut_at_eos(ids[:limit])
                out[i] = Sample(r, req.prompt_ids, req.prefix_ids, completion, finished)
        grouped: list[list[Sample]] = [[] for _ in requests]
        for s in out:
            grouped[s.request].append(s)
        return grouped

    def _cut_at_eos(self, ids: list[int]) -> tuple[list[int], bool]:
        if self.eos in ids:
            return ids[: ids.index(self.eos) + 1], True
        return ids, False

    @torch.no_grad()
    def _generate_batch(self, inputs: list[list[int]], params: SamplingParams, limits: list[int],
                        owners: list[int] | None = None) -> list[list[int]]:
        """Sample continuations of left-padded inputs; the batch runs to its largest limit, and rows with a
        smaller one stop (pad) at theirs, so that a batch ends once every row has its tokens or EOS.

        owners[i] is the request of row i: rows of one request have the same input, which with
        share_prefill is encoded once (all but its last token; generate then starts from the copied cache).
        """
        from transformers import StoppingCriteriaList

        width = max(map(len, inputs))
        device = next(self.model.parameters()).device
        ids = torch.full((len(inputs), width), self.pad, dtype=torch.long)
        attn = torch.zeros((len(inputs), width), dtype=torch.long)
        for i, seq in enumerate(inputs):
            ids[i, width - len(seq):] = torch.tensor(seq)
            attn[i, width - len(seq):] = 1
        longest = max(limits)
        # Only with mixed limits: a batch with one limit samples exactly as before (same random stream).
        stop = StoppingCriteriaList([_RowLimits(width, limits, device)] if min(limits) < longest else [])
        config = sampling_config(replace(params, max_new_tokens=longest), self.eos, self.pad)
        was_training = self.model.training
        self.model.eval()  # no dropout: the sampling policy is the one the loss evaluates (also in eval mode)
        try:
            with model_defaults_set_aside(self.model):
                cache = self._shared_prefill(ids, attn, owners, inputs, device)
                generated = self.model.generate(input_ids=ids.to(device), attention_mask=attn.to(device),
                                                generation_config=config, stopping_criteria=stop,
                                                **({"past_key_values": cache} if cache is not None else {}))
        finally:
            self.model.train(was_training)
        return generated[:, width:].tolist()

    def _shared_prefill(self, ids, attn, owners, inputs, device):
        """The key/value cache of every row's input but its last token, computed once per request and copied
        to the request's rows; None when nothing is shared (or a row has a single token to encode)."""
        if not self.share_prefill or owners is None or min(map(len, inputs)) < 2:
            return None
        first: dict[int, int] = {}
        for row, owner in enumerate(owners):
            first.setdefault(owner, row)
        if len(first) == len(owners):
            return None
        unique = torch.tensor(list(first.values()))
        slot = {owner: k for k, owner in enumerate(first)}
        copy_of = torch.tensor([slot[o] for o in owners])
        mask = attn[unique]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: positions count real tokens only
        out = self.model(input_ids=ids[unique, :-1].to(device), attention_mask=mask[:, :-1].to(device),
                         position_ids=positions[:, :-1].to(device), use_cache=True)
        cache = out.past_key_values
        cache.reorder_cache(copy_of.to(device))  # index_select along the batch: request -> its rows
        return cache


class _RowLimits:
    """A stopping criterion per row: row i is done once it has generated limits[i] tokens.

    transformers pads a done row from then on (the pad is cut off with the limit), and ends the batch
    when every row is done, so short budgets save generation steps instead of running to the largest.
    """

    def __init__(self, width: int, limits: list[int], device) -> None:
        self.width = width
        self.limits = torch.tensor(limits, dtype=torch.long, device=device)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return (input_ids.shape[1] - self.width) >= self.limits


def sampling_config(params: SamplingParams, eos_token_id: int, pad_token_id: int):
    """The GenerationConfig rollwise samples with: temperature, top_p, length and special ids; every
    other logits processor explicitly off (top_k=0, no penalties, no minimum length, single beam).

    >>> sampling_config(SamplingParams(temperature=0.7), eos_token_id=1, pad_token_id=0).top_k
    0
    """
    from transformers import GenerationConfig

    neutral = dict(num_beams=1, min_new_tokens=0, repetition_penalty=1.0, no_repeat_ngram_size=0,
                   renormalize_logits=False, remove_invalid_values=False, num_return_sequences=1)
    if params.greedy:
        chosen = dict(do_sample=False)
    else:  # the warpers below act only when sampling (greedy warns if they are set)
        chosen = dict(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0, typical_p=1.0,
                      epsilon_cutoff=0.0, eta_cutoff=0.0)
    return GenerationConfig(max_new_tokens=params.max_new_tokens, eos_token_id=eos_token_id,
                            pad_token_id=pad_token_id, **neutral, **chosen)


@contextlib.contextmanager
def model_defaults_set_aside(model):
    """Give the model a blank `generation_config` for the duration of one `generate` call.

    Passing `generation_config=` is not enough: transformers (5.x, `_prepare_generation_config`)
    fills every field the passed config leaves None from `model.generation_config`, and several
    processors are switched on by a non-None value alone (suppress_tokens, begin_suppress_tokens,
    bad_words_ids, sequence_bias, min_p, forced_bos/eos_token_id, ...), so they cannot be switched off
    from the passed config. A PEFT model copies its base model's config at each `generate`, so the
    blank one goes on the base model.
    """
    from transformers import GenerationConfig

    holder = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = holder.generation_config
    holder.generation_config = GenerationConfig()
    try:
        yield
    finally:
        holder.generation_config = saved
