"""The built-in tiny policy: a 0.6M-parameter Llama that reads sums and answers in reversed digits.

It exists so that `rollwise train` shows real RL learning on two CPU cores in minutes. It is made by
a short supervised warm-up on the chosen task with rollwise's own code (`rollwise.policy.warmup`), then
saved as an ordinary Hugging Face model directory plus `rollwise.json` (its codec), cached by a hash
of every setting that shapes it, so later runs and all runs of a comparison start from the same policy.

Two codecs share one 17-symbol character vocabulary:
- `TinyCodec` (`tiny_codec: answer`, the default run): the answer only;
- `ScratchpadCodec` (`tiny_codec: scratchpad`, rollwise.policy.scratchpad): the running partial sums, then
  the answer, so that the model writes intermediate steps the verifier never reads.

Deliberate choices (measured on two cores; see docs/results.md and the README):
- every number of the prompt is zero-padded to a fixed width and written least-significant digit
  first, and so is the answer (zero-padded to a fixed width). Digit column j of every term then sits
  at a fixed distance from answer digit j, which a 3-layer model learns in about a thousand steps;
  with natural digit order it had learned nothing after 1,500;
- numbers get max_digits + 1 digits: reasoning-gym's basic_arithmetic draws randint(0, 10**d), so
  100 appears among two-digit numbers (about 2% of the default prompts) and needs a third digit;
- the model warms up on the easy part of the task only and stops as soon as it answers a target
  share of it (greedy), so the RL pool holds a partly solved part and a part out of reach.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from rollwise.data.pool import PoolItem

VOCAB = ["<pad>", "<eos>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "+", "-", "*", "=", ","]
PAD, EOS = 0, 1
CHAR_TO_ID = {c: i for i, c in enumerate(VOCAB) if len(c) == 1}
CODEC_FILE = "rollwise.json"


def widest_number(options: dict) -> int:
    """Digits of the largest number a basic_arithmetic / chain_sum item can hold: randint(0, 10**d)
    includes 10**d, so d-digit numbers need d + 1 digits."""
    return len(str(10 ** int(options.get("max_digits", 2))))


def expression_text(item: PoolItem, allowed: str = "0123456789+-*") -> str:
    """The item's arithmetic expression without spaces; a clear error for anything the tiny model cannot read."""
    text = str(item.metadata.get("expression", item.prompt)).replace(" ", "").rstrip("=")
    bad = sorted({c for c in text if c not in allowed})
    if bad or not text:
        raise ValueError(
            f"prompt id {item.id}: the built-in tiny model reads arithmetic expressions ({allowed}), "
            f"found {bad or 'nothing'}; use a Hugging Face model (--model DIR) for this task"
        )
    return text


def reversed_number(digits: str, width: int, item: PoolItem) -> str:
    """`17` at width 3 -> `710`: zero-padded, least-significant digit first; too wide is an error."""
    if len(digits) > width:
        raise ValueError(f"prompt id {item.id}: number {digits} has more than the layout's {width} digits; "
                         "the tiny model's layout comes from task_options max_digits / max_terms")
    return digits.zfill(width)[::-1]


def read_reversed(field: str) -> str:
    """`120` -> `21`: reverse the digits back, leading zeros of the fixed width go; not a number: as is."""
    text = field[::-1]
    sign = "-" if text.startswith("-") else ""
    digits = text[len(sign):]
    return sign + (digits.lstrip("0") or "0") if digits.isdigit() else text


@dataclass(frozen=True)
class TinyLayout:
    """Widths of the tiny model's fixed-layout prompts and answers, derived from the task options."""

    number_width: int = 3
    answer_width: int = 3
    prompt_width: int = 12
    reverse_numbers: bool = True

    @classmethod
    def for_task(cls, options: dict) -> "TinyLayout":
        width, terms = widest_number(options), int(options.get("max_terms", 3))
        largest = terms * 10 ** int(options.get("max_digits", 2))
        return cls(number_width=width, answer_width=len(str(largest)), prompt_width=terms * (width + 1))


class TinyCodec:
    """Character codec of the tiny model (answer only): `4+17` in as `400+710=`, 21 out as `120<eos>`."""

    name = "answer"
    eos_token_id = EOS
    pad_token_id = PAD

    def __init__(self, layout: TinyLayout = TinyLayout()) -> None:
        self.char_to_id = CHAR_TO_ID
        self.layout = layout

    def expression(self, item: PoolItem) -> str:
        width, reverse = self.layout.number_width, self.layout.reverse_numbers
        if not reverse:
            return re.sub(r"\d+", lambda m: m.group().zfill(width), expression_text(item))
        return re.sub(r"\d+", lambda m: reversed_number(m.group(), width, item), expression_text(item))

    def prompt_ids(self, item: PoolItem) -> list[int]:
        # Left-padded to a fixed width with a visible pad symbol, so that every digit sits at the
        # same distance from `=` whatever the number of terms.
        ids = [CHAR_TO_ID[c] for c in self.expression(item) + "="]
        return [PAD] * max(0, self.layout.prompt_width + 1 - len(ids)) + ids

    def target_ids(self, answer: str) -> list[int]:
        digits = answer.lstrip("-")
        sign = "-" if answer.startswith("-") else ""
        return [CHAR_TO_ID[c] for c in digits.zfill(self.layout.answer_width)[::-1] + sign] + [EOS]

    def supervised_target(self, item: PoolItem) -> list[int]:
        """The completion the warm-up teaches for item."""
        return self.target_ids(item.answer)

    def decode(self, ids: list[int]) -> str:
        return "".join(VOCAB[i] for i in ids if i not in (PAD, EOS) and 0 <= i < len(VOCAB))

    def answer(self, completion: str) -> str | None:
        """Reverse the digits back; leading zeros of the fixed width go (`120` -> `21`)."""
        return read_reversed(completion) if completion else None

    @property
    def max_new_tokens(self) -> int:
        return self.layout.answer_width + 2  # digits, a possible sign, EOS

    @property
    def max_positions(self) -> int:
        return self.layout.prompt_width + 1 + self.max_new_tokens


def tiny_model_config(layers: int, hidden: int, heads: int, max_positions: int = 64):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(VOCAB), hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max(64, max_positions),
        tie_word_embeddings=True, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD,
    )


def build_tiny_model(layers: int, hidden: int, heads: int, seed: int = 0, max_positions: int = 64):
    """A randomly initialised tiny Llama (tests use it directly, without warm-up)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_model_config(layers, hidden, heads, max_positions))
    model.generation_config.pad_token_id = PAD
    model.generation_config.eos_token_id = EOS
    return model


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def expected_seconds(steps: int, batch: int, tokens_per_item: int = 16) -> float:
    """Rough warm-up time on two cores (about 0.15 s a step of 64 sequences of 16 tokens, one thread)."""
    return math.ceil(steps * batch * 0.0025 * max(1.0, tokens_per_item / 16))
