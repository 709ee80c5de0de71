"""Prompt codecs: how a policy sees a pool item and how its completion becomes an answer.

A codec turns an item into prompt token ids and a completion back into the answer string the
verifier scores. The built-in tiny model has its own compact codec (`rollwise.policy.tiny.TinyCodec`);
Hugging Face models use `ChatCodec` (chat template when the tokenizer has one, plain text otherwise)
and ask for the final answer inside <answer></answer>, the convention reasoning-gym's tasks use.
"""

from __future__ import annotations

from typing import Protocol

from rollwise.data.pool import PoolItem

ANSWER_INSTRUCTION = (
    "Think briefly, then give only the final answer inside <answer></answer> tags, "
    "for example <answer>42</answer>."
)


class Codec(Protocol):
    eos_token_id: int
    pad_token_id: int

    def prompt_ids(self, item: PoolItem) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def answer(self, completion: str) -> str | None: ...


class ChatCodec:
    """Codec for Hugging Face tokenizers.

    The answer is the content of the last <answer> tag; models that ignore the format are scored on
    the last number of their reply when `fallback_last_number` is set (small chat models often
    answer correctly without tags, docs/results.md).
    """

    def __init__(self, tokenizer, fallback_last_number: bool = True, instruction: str = ANSWER_INSTRUCTION):
        self.tokenizer = tokenizer
        self.instruction = instruction
        self.fallback_last_number = fallback_last_number
        self.use_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.eos_token_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        # Many causal LMs define no pad token; any id works because padded positions are masked.
        self.pad_token_id = pad if pad is not None else self.eos_token_id

    def render(self, item: PoolItem) -> str:
        text = f"{item.prompt}\n\n{self.instruction}"
        if self.use_chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return text + "\n"

    def prompt_ids(self, item: PoolItem) -> list[int]:
        return list(self.tokenizer(self.render(item), add_special_tokens=not self.use_chat_template)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def answer(self, completion: str) -> str | None:
        from rollwise.verify.extract import extract_answer, last_number

        found = extract_answer(completion)
        if found is None and self.fallback_last_number:
            found = last_number(completion)
        return found
