"""Verifiers: reasoning-gym adapters, math answers (math-verify) and normalised exact match.

Model output is untrusted (docs/sandbox.md). Each verifier says whether it may run in the
training process (`in_process_safe`: pure Python of our own, bounded work, no eval); all others run
only inside the guard's worker processes (`rollwise.verify.guard`). Several reasoning-gym scorers
execute their input: countdown, puzzle24, polynomial_multiplication and the integration tasks call
sympy `parse_expr` (which `eval`s Python), and n_queens, binary_matrix, spiral_matrix and
string_insertion call `eval` on the answer itself. So the tasks people train on most have scorers
of our own here, and every other reasoning-gym task keeps its own scorer but runs it in a worker.

    v = build_verifier("countdown", "auto")          # CountdownVerifier, in_process_safe
    v.score("(6 + 4) * 3", item)                     # item: numbers [3, 4, 6], target 30
    # -> Score(acc=True, reward=1.0)

acc is "verified correct": reward >= 1 - 1e-9 for scorers that give partial credit.

The own countdown and puzzle24 scorers give reasoning-gym's rewards except where this table says
(tests/verify/test_scorer_agreement.py scores generated answers with both and checks every row):

    difference                       task       ours           reasoning-gym  why
    no answer (None)                 both       0.0            0.01           nothing extracted earns nothing
    period after `)` or a space      both       as without it  0.01           a sentence ends there too
    `**` exponent                    countdown  0.01           0.05 / 1.0     outside the grammar (9**9**9 hangs)
    decimal literal (`6.0`)          countdown  0.01           0.05           outside the grammar
    value in (24, 25)                puzzle24   0.01           1.0            reasoning-gym truncates with int()
    four numbers, not the given ones puzzle24   0.01           1.0            reasoning-gym checks only the range

Both accept a period right after the last number (`(6 + 4) * 3.`); both refuse `×`, `÷`, `−`,
`\\times`, `=`, `..`, prose, leading zeros and implicit products.
"""

from __future__ import annotations

import importlib.util
import math
import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

from rollwise.data.pool import PoolItem
from rollwise.verify.base import WRONG, Score
from rollwise.verify.expressions import answer_expression, evaluate_expression

RIGHT = Score(True, 1.0)
VERIFIER_NAMES = ("auto", "math", "exact")


def from_reward(value) -> Score:
    """A scorer's number as a Score: clipped to [0, 1]; non-numbers and NaN count as 0."""
    try:
        reward = float(value)
    except (TypeError, ValueError, OverflowError):
        return WRONG
    if not math.isfinite(reward):
        return WRONG
    reward = min(1.0, max(0.0, reward))
    return Score(reward >= 1.0 - 1e-9, reward)


# ---------------------------------------------------------------------------- plain numbers

_PLAIN = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?")


def canonical_number(text: str, strip_commas: bool = True) -> str | None:
    """`+01,000.50` -> `1000.5`: sign, leading zeros and trailing decimal zeros normalised.

    Comparing canonical strings needs no big-number arithmetic, so a 10,000-digit answer costs
    microseconds. ASCII digits only; None when the text is not a plain decimal number.
    """
    s = text.strip()
    if strip_commas:
        s = s.replace(",", "")
    m = _PLAIN.fullmatch(s)
    if m is None or not (m.group(2) or m.group(3)):
        return None
    sign, whole, frac = m.group(1), m.group(2).lstrip("0") or "0", (m.group(3) or "").rstrip("0")
    if whole == "0" and not frac:
        sign = ""
    return ("-" if sign == "-" else "") + whole + ("." + frac if frac else "")


def substring_credit(answer: str, oracle: str) -> float:
    """reasoning-gym's default shaped reward: the oracle inside a longer answer earns its share."""
    return 1.0 if answer == oracle else len(oracle) / len(answer) if oracle and oracle in answer else 0.0


@dataclass(frozen=True)
class NumericVerifier:
    """Numeric answers (basic_arithmetic, chain_sum): equal value, or reasoning-gym's partial credit.

    reasoning-gym compares basic_arithmetic answers as strings and chain_sum answers with
    `Decimal`; here both accept sign, leading zeros, trailing decimal zeros and thousands commas.
    """

    name: str = "numeric"
    in_process_safe: ClassVar[bool] = True

    def score(self, answer: str | None, item: PoolItem) -> Score:
        if answer is None:
            return WRONG
        got, want = canonical_number(answer), canonical_number(item.answer)
        if got is not None and got == want:
            return RIGHT
        return from_reward(substring_credit(answer.strip().replace(",", ""), item.answer.replace(",", "")))


# ---------------------------------------------------------------------------- normalised exact match

def normalise_text(text: str) -> str:
    """Compatibility form (full-width digits become ASCII), case-folded, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split()).rstrip(".")


@dataclass(frozen=True)
class ExactVerifier:
    """Normalised string equality with the reference answer; numbers compare by value."""

    name: str = "exact"
    in_process_safe: ClassVar[bool] = True

    def score(self, answer: str | None, item: PoolItem) -> Score:
        if answer is None:
            return WRONG
        got, want = normalise_text(answer), normalise_text(item.answer)
        num_got, num_want = canonical_number(got), canonical_number(want)
        if num_want is not None:
            return RIGHT if num_got == num_want else WRONG
        return RIGHT if got == want else WRONG


# ---------------------------------------------------------------------------- knights and knaves

KNIGHT_KNAVE_ROLES = frozenset({"knight", "knave", "hero", "villain", "saint", "sinner", "angel", "devil",
                                "altruist", "egoist", "sage", "fool", "pioneer", "laggard"})


def knight_knave_assignments(text: str, roles: frozenset) -> set[tuple[str, str]]:
    """reasoning-gym's reading of "A is a knight, and B is a knave" as {(name, role)} (mirrored)."""
    text = text.lower().strip()
    for ch in ".,()":
        text = text.replace(ch, " ")
    assignments, name = set(), None
    for part in text.replace(" and ", " ").split():
        if part in ("is", "a", "an"):
            continue
        if part in roles:
            if name:
                assignments.add((name, part))
                name = None
        else:
            name = part
    return assignments


@dataclass(frozen=True)
class KnightsKnavesVerifier:
    """knights_knaves: the same assignment in any order; partial credit as reasoning-gym gives it."""

    name: str = "knights_knaves"
    in_process_safe: ClassVar[bool] = True

    def score(self, answer: str | None, item: PoolItem) -> Score:
        if not answer:
            return WRONG
        terms = item.metadata.get("knight_knave_terms") or {}
        roles = KNIGHT_KNAVE_ROLES | {str(terms[k]).lower() for k in ("knight", "knave") if k in terms}
        want = knight_knave_assignments(item.answer, roles)
        got = knight_knave_assignments(answer, roles)
        if got == want:
            return RIGHT
        matching = len(want & got)
        if want and len(want) == len(got) and matching:
            return from_reward(0.3 + 0.7 * matching / len(want))
        return WRONG


# ---------------------------------------------------------------------------- arithmetic expressions
# Parsed by rollwise.verify.expressions (never eval or sympy).


@dataclass(frozen=True)
class CountdownVerifier:
    """countdown without sympy: reasoning-gym's rules and rewards over a safe grammar.

    Mirrors its score_answer: the integers written must be exactly the given numbers (each used
    once, all used); the value must satisfy numpy.isclose(value, target) (atol 1e-6, rtol 1e-5).
    Rewards: 1.0 solved, 0.05 a valid expression that misses, 0.01 unparsable. A sentence-ending
    period is dropped. Differences (module docstring): `**`, decimals and names are refused (0.01)
    where sympy would have evaluated them.
    """

    name: str = "countdown"
    in_process_safe: ClassVar[bool] = True

    def score(self, answer: str | None, item: PoolItem) -> Score:
        if answer is None:
            return WRONG
        meta = item.metadata
        try:
            value, used = evaluate_expression(answer_expression(answer))
        except ValueError:
            return from_reward(0.01)
        if sorted(used) != sorted(int(n) for n in meta["numbers"]):
            return from_reward(0.05)
        target = Fraction(meta["target"])
        close = abs(value - target) <= Fraction(1, 10**6) + Fraction(1, 10**5) * abs(target)
        return RIGHT if close else from_reward(0.05)


@dataclass(frozen=True)
class Puzzle24Verifier:
    """puzzle24 without sympy; stricter than reasoning-gym on purpose.

    reasoning-gym accepts any four numbers within the value range (not the given ones) and
    truncates the value with int() (24.5 passes); here the integers must be the given numbers
    and the value exactly 24. Rewards 1.0 or 0.01, as there; a sentence-ending period is dropped.
    """

    name: str = "puzzle24"
    in_process_safe: ClassVar[bool] = True

    def score(self, answer: str | None, item: PoolItem) -> Score:
        if answer is None:
            return WRONG
        try:
            value, used = evaluate_expression(answer_expression(answer))
        except ValueError:
            return from_reward(0.01)
        ok = value == 24 and sorted(used) == sorted(int(n) for n in item.metadata["numbers"])
        return RIGHT if ok else from_reward(0.01)


# ---------------------------------------------------------------------------- worker-only verifiers


class MathVerifier:
    """Free-form math answers with math-verify (`1/2`, `0.5`, `\\frac{1}{2}` agree). Worker only.

    math-verify parses with sympy, so `score` runs in the guard's workers. Its own signal-based
    timeouts are switched off because they would cancel the worker's per-call timer.
    `quick_score` settles the common plain-number cases in-process without any parsing library.
    """

    name = "math"
    in_process_safe = False
    preload_modules = ("math_verify",)

    def __init__(self) -> None:
        self._gold_cache: dict[str, list] = {}

    def __getstate__(self) -> dict:  # the parsed-gold cache stays behind
        return {"_gold_cache": {}}

    def quick_score(self, answer: str, item: PoolItem) -> Score | None:
        """Integer vs integer either way; equal plain decimals as right; otherwise None (ask a worker)."""
        if "," in answer:
            return None
        got, want = canonical_number(answer, strip_commas=False), canonical_number(item.answer, strip_commas=False)
        if got is None or want is None:
            return None
        if got == want:
            return RIGHT
        return WRONG if "." not in got and "." not in want else None

    def prepare(self) -> None:
        """Import and warm up math-verify (sympy loads lazily) before the first timed call."""
        import logging

        logging.getLogger("math_verify").setLevel(logging.ERROR)
        for gold, pred in (("1/2", "0.5"), ("\\frac{1}{2}", "\\boxed{x+1}"), ("nan", "\\sqrt{2}"), ("1, 2", "{1,2}")):
            self._verify(self._parse(gold), self._parse(pred))

    @staticmethod
    def _parse(text: str) -> list:
        from math_verify import parse

        parsed = parse(text, parsing_timeout=None)
        if not parsed and "$" not in text:  # bare LaTeX such as \sqrt{2} or x+1 needs math mode
            parsed = parse(f"${text}$", parsing_timeout=None)
        return parsed

    @staticmethod
    def _verify(gold: list, pred: list) -> bool:
        from math_verify import verify

        return bool(verify(gold, pred, timeout_seconds=None))

    def score(self, answer: str | None, item: PoolItem) -> Score:
        if answer is None:
            return WRONG
        gold = self._gold_cache.get(item.answer)
        if gold is None:
            if len(self._gold_cache) > 4096:
                self._gold_cache.clear()
            gold = self._gold_cache[item.answer] = self._parse(item.answer)
        if not gold:  # an unparsable reference: fall back to text equality rather than never-right
            return ExactVerifier().score(answer, item)
        return RIGHT if self._verify(gold, self._parse(answer)) else WRONG


class ReasoningGymVerifier:
    """Any other reasoning-gym task, with its own scorer. Worker only: scorers may eval the answer."""

    in_process_safe = False
    preload_modules = ("reasoning_gym",)

    def __init__(self, task: str, options: dict | None = None):
        self.task, self.options = task, dict(options or {})
        self.name = f"reasoning_gym:{task}"
        self._scorer = None

    def __getstate__(self) -> dict:
        return {"task": self.task, "options": self.options, "name": self.name, "_scorer": None}

    def prepare(self) -> None:
        """Build the dataset's scorer (some datasets load data files) before the first timed call."""
        import reasoning_gym

        try:  # the run's options, where the scorer reads its config (puzzle24 reads value ranges)
            self._scorer = reasoning_gym.create_dataset(self.task, **self.options).score_answer
        except Exception:  # options meant for generation only: the default config scores the same
            self._scorer = reasoning_gym.get_score_answer_fn(self.task)

    def score(self, answer: str | None, item: PoolItem) -> Score:
        if answer is None:
            return WRONG
        if self._scorer is None:
            self.prepare()
        entry = item.entry if item.entry is not None else {
            "question": item.prompt, "answer": item.answer, "metadata": item.metadata}
        return from_reward(self._scorer(answer, entry))


# ---------------------------------------------------------------------------- registry

OWN_SCORERS = {
    "basic_arithmetic": lambda: NumericVerifier("basic_arithmetic"),
    "chain_sum": lambda: NumericVerifier("chain_sum"),
    "countdown": CountdownVerifier,
    "puzzle24": Puzzle24Verifier,
    "knights_knaves": KnightsKnavesVerifier,
}


def build_verifier(task: str, name: str = "auto", options: dict | None = None):
    """The verifier for a reasoning-gym task (or "file") and a verifier name (auto, math, exact).

    auto: our own safe scorer where one exists, else reasoning-gym's scorer (worker only);
    math for file data. Raises ValueError naming the problem for unknown names.
    """
    if name not in VERIFIER_NAMES:
        raise ValueError(f"unknown verifier {name!r}: expected one of {', '.join(VERIFIER_NAMES)}")
    if name == "exact":
        return ExactVerifier()
    if name == "math" or task == "file":
        if importlib.util.find_spec("math_verify") is None:
            raise ValueError("verifier 'math' needs math-verify: pip install 'rollwise[math]'")
        return MathVerifier()
    if task in OWN_SCORERS:
        return OWN_SCORERS[task]()
    import reasoning_gym

    if task not in reasoning_gym.factory.DATASETS:
        raise ValueError(f"unknown task {task!r}: use 'file' or a reasoning-gym task (`rollwise tasks` lists them)")
    return ReasoningGymVerifier(task, options)
