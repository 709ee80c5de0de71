"""The tiny model's scratchpad codec: it writes the running partial sums, then stops; only the last is scored.

    47 + 45 + 99  ->  prompt  `740+540+990+<pad>x4 ... =`   (one fixed slot per possible term)
                  ->  completion `740,290,191<eos>`         (s1 = 47, s2 = 92, s3 = 191, reversed)

Like a chain of thought, the intermediate fields are the model's own work: the verifier sees only the
last field (`answer`), so a wrong intermediate with a right final answer scores 1, and right
intermediates followed by a wrong final answer score 0. An error in an intermediate step carries into
the answer because every sum is computed from the previous one.

Why this layout (docs/results.md, "a throwaway prototype of a scratchpad testbed"): every term and every
sum has the same width W (zero-padded, least-significant digit first), and the prompt has one slot of
W + 1 symbols per possible term, unused slots filled with <pad>. Term i and sum s_i are then always
exactly `prompt length` positions apart and s_(i-1) is W + 1 positions before s_i, so every step is
the same two-number addition at fixed distances, and all prompts have the same length (no padding in
generation). Numbers and sums share the width of the largest possible sum, max_terms * 10**max_digits
(randint(0, 10**d) includes 10**d; see rollwise.policy.tiny.widest_number).
"""

from __future__ import annotations

from dataclasses import dataclass

from rollwise.data.pool import PoolItem
from rollwise.policy.tiny import CHAR_TO_ID, EOS, PAD, VOCAB, expression_text, read_reversed, reversed_number


@dataclass(frozen=True)
class ScratchpadLayout:
    """`slots` term slots of `width` digits each; every running sum also has `width` digits."""

    slots: int = 7
    width: int = 3

    @classmethod
    def for_task(cls, options: dict) -> "ScratchpadLayout":
        terms = int(options.get("max_terms", 3))
        largest = terms * 10 ** int(options.get("max_digits", 2))
        return cls(slots=terms, width=len(str(largest)))

    @property
    def prompt_length(self) -> int:
        return self.slots * (self.width + 1) + 1


class ScratchpadCodec:
    """Prompts of fixed slots, completions of running sums; `answer` reads only the last field.

    >>> codec = ScratchpadCodec(ScratchpadLayout(slots=3, width=3))
    >>> codec.decode(codec.sums_ids([47, 45, 99]))
    '740,290,191'
    >>> codec.answer('740,999,191')   # a wrong intermediate does not matter
    '191'
    """

    name = "scratchpad"
    eos_token_id = EOS
    pad_token_id = PAD

    def __init__(self, layout: ScratchpadLayout = ScratchpadLayout()) -> None:
        self.layout = layout

    def terms(self, item: PoolItem) -> list[int]:
        """The item's terms; only sums of non-negative numbers have this scratchpad."""
        text = expression_text(item, allowed="0123456789+")
        parts = text.split("+")
        if any(not p for p in parts):
            raise ValueError(f"prompt id {item.id}: {text!r} is not a sum of numbers")
        if len(parts) > self.layout.slots:
            raise ValueError(f"prompt id {item.id}: {len(parts)} terms, but the scratchpad layout has "
                             f"{self.layout.slots} slots (task_options max_terms)")
        for p in parts:
            reversed_number(p, self.layout.width, item)  # raises for a number wider than the layout
        return [int(p) for p in parts]

    def prompt_ids(self, item: PoolItem) -> list[int]:
        terms, w = self.terms(item), self.layout.width
        text = "".join(str(t).zfill(w)[::-1] + "+" for t in terms)
        ids = [CHAR_TO_ID[c] for c in text]
        ids += [PAD] * ((self.layout.slots - len(terms)) * (w + 1))
        return ids + [CHAR_TO_ID["="]]

    def sums_ids(self, terms: list[int]) -> list[int]:
        """The running sums s1 = t1, s2 = s1 + t2, ..., reversed and joined by `,` (no EOS)."""
        fields, total = [], 0
        for t in terms:
            total += t
            fields.append(str(total).zfill(self.layout.width)[::-1])
        return [CHAR_TO_ID[c] for c in ",".join(fields)]

    def supervised_target(self, item: PoolItem) -> list[int]:
        """The completion the warm-up teaches for item: its running sums, then EOS."""
        return self.sums_ids(self.terms(item)) + [EOS]

    def decode(self, ids: list[int]) -> str:
        return "".join(VOCAB[i] for i in ids if i not in (PAD, EOS) and 0 <= i < len(VOCAB))

    def answer(self, completion: str) -> str | None:
        """The last field read back (`740,290,191` -> `191`); nothing written: None."""
        if not completion:
            return None
        last = completion.split(",")[-1]
        return read_reversed(last) if last else None

    @property
    def max_new_tokens(self) -> int:
        return self.layout.slots * (self.layout.width + 1)  # every sum and its `,` or EOS

    @property
    def max_positions(self) -> int:
        return self.layout.prompt_length + self.max_new_tokens
