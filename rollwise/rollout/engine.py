"""Generation engines: turn prompts into sampled completions.

The interface is deliberately small so that a vLLM engine can replace the transformers one:
a request is a prompt (token ids), an optional prefix to continue from (partial rollouts, RPO) and
its own sample count n (groups of different sizes, GVM). `HFEngine` batches all samples of all
requests through `model.generate`, left-padded, and cuts each completion after its first EOS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    greedy: bool = False


@dataclass(frozen=True)
class GenRequest:
    """Sample n continuations of prompt_ids + prefix_ids."""

    prompt_ids: tuple[int, ...]
    n: int
    prefix_ids: tuple[int, ...] = ()


@dataclass
class Sample:
    """One completion. `completion_ids` includes the EOS token when `finished`."""

    request: int
    prompt_ids: tuple[int, ...]
    prefix_ids: tuple[int, ...]
    completion_ids: list[int] = field(default_factory=list)
    finished: bool = False

    @property
    def generated_tokens(self) -> int:
        return len(self.completion_ids)


class Engine(Protocol):
    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[list[Sample]]:
        """Return, for each request, its n samples (in order)."""

    def sync_weights(self, model) -> None:
        """Make the engine sample from the current policy (a no-op when it shares the model)."""


class HFEngine:
    """Sampling with transformers `generate` on the training model itself (no weight copy)."""

    def __init__(self, model, eos_token_id: int, pad_token_id: int, batch_size: int = 512):
        self.model = model
        self.eos = eos_token_id
        self.pad = pad_token_id
        self.batch_size = batch_size

    def sync_weights(self, model) -> None:
        self.model = model

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[list[Sample]]:
        flat = [(r, req) for r, req in enumerate(requests) for _ in range(req.n)]
        # Similar lengths batch together: less padding, fewer wasted positions.
        order = sorted(range(len(flat)), key=lambda i: len(flat[i][1].prompt_ids) + len(flat[i][1].prefix_ids))
        out: list[Sample | None] = [None] * len(flat)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            inputs = [list(flat[i][1].prompt_ids) + list(flat[i][1].prefix_ids) for i in chunk]
            for i, ids in zip(chunk, self._generate_batch(inputs, params)):
                r, req = flat[i]
                completion, finished = self._cut_at_eos(ids)
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
    def _generate_batch(self, inputs: list[list[int]], params: SamplingParams) -> list[list[int]]:
        width = max(map(len, inputs))
        device = next(self.model.parameters()).device
        ids = torch.full((len(inputs), width), self.pad, dtype=torch.long)
        attn = torch.zeros((len(inputs), width), dtype=torch.long)
        for i, seq in enumerate(inputs):
            ids[i, width - len(seq):] = torch.tensor(seq)
            attn[i, width - len(seq):] = 1
        was_training = self.model.training
        self.model.eval()
        kwargs = dict(max_new_tokens=params.max_new_tokens, eos_token_id=self.eos, pad_token_id=self.pad)
        if params.greedy:
            kwargs.update(do_sample=False)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        generated = self.model.generate(input_ids=ids.to(device), attention_mask=attn.to(device), **kwargs)
        if was_training:
            self.model.train()
        return generated[:, width:].tolist()
