"""Answer extraction: the part of a completion that the verifier scores.

Completions are untrusted and can be megabytes long, so both functions do linear work: the regular
expressions below have no nested or overlapping quantifiers (no catastrophic backtracking), and the
tag search walks the text once.

    >>> extract_answer("so <answer>1</answer> no, <answer> 42 </answer>")
    '42'
    >>> last_number("3 apples cost $1,250.50, that is 7/2 each")
    '7/2'
"""

from __future__ import annotations

import re

_TAG = re.compile(r"<(/?)answer>", re.IGNORECASE)

# A number: optional sign (only when not glued to a preceding word, digit or closing bracket, so
# that `3-12` yields `12`, not `-12`), digits with optional thousands commas, an optional decimal
# part and an optional `/denominator`. Every quantifier follows a distinct literal, so matching is
# linear in the length of the text.
_NUMBER = re.compile(r"(?:(?<![\w.)\]])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")


def extract_answer(text: str) -> str | None:
    """The stripped content of the last complete <answer>...</answer> (tags case-insensitive).

    The opening tag used is the last one before the last closing tag, so a stray earlier
    `<answer>` (the model restarting its answer) does not leak into the result. None when the
    text holds no complete pair.
    """
    if not isinstance(text, str):
        return None
    last_open = None
    found: tuple[int, int] | None = None
    for m in _TAG.finditer(text):
        if m.group(1):  # closing tag
            if last_open is not None:
                found = (last_open, m.start())
        else:
            last_open = m.end()
    if found is None:
        return None
    return text[found[0]:found[1]].strip()


def last_number(text: str) -> str | None:
    """The last integer, decimal or fraction-like number in the text, thousands commas removed.

    Used as a fallback answer when a model ignores the answer format; None when there is none.
    """
    if not isinstance(text, str):
        return None
    last = None
    for match in _NUMBER.finditer(text):
        last = match
    if last is None:
        return None
    return last.group().replace(",", "")
