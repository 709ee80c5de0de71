"""Verifiers: known right and wrong answers per task, agreement with reasoning-gym, extraction."""

import pickle
import time

import pytest

from rollwise.data.pool import PoolItem, json_safe
from rollwise.verify.base import WRONG
from rollwise.verify.expressions import answer_expression, evaluate_expression
from rollwise.verify.extract import extract_answer, last_number
from rollwise.verify.verifiers import (
    CountdownVerifier, ExactVerifier, MathVerifier, NumericVerifier, ReasoningGymVerifier, build_verifier,
    canonical_number,
)


def rg_items(task: str, n: int = 20, seed: int = 7, **options) -> list[PoolItem]:
    import reasoning_gym

    ds = reasoning_gym.create_dataset(task, size=n, seed=seed, **options)
    out = []
    for i in range(n):
        e = json_safe(ds[i])
        out.append(PoolItem(i, e["question"], str(e["answer"]), e.get("metadata", {}), e))
    return out


def rg_scorer(task):
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(task)


# ---------------------------------------------------------------------------- extraction


def test_extract_answer_takes_the_last_complete_tag():
    assert extract_answer("<answer>1</answer> then <answer> 42 </answer>") == "42"
    assert extract_answer("<answer>1</answer> <answer>2") == "1"
    assert extract_answer("<Answer>x</ANSWER>") == "x"
    assert extract_answer("<answer>a <answer>b</answer>") == "b"
    assert extract_answer("no tags 12") is None
    assert extract_answer("</answer><answer>") is None


def test_last_number_forms():
    assert last_number("it is -12") == "-12"
    assert last_number("3.5 or 7/2") == "7/2"
    assert last_number("total 1,250.50 dollars.") == "1250.50"
    assert last_number("range 3-12") == "12"
    assert last_number("no digits") is None


def test_extraction_is_linear_on_megabyte_inputs():
    hostile = ["<answer>" * 200_000, "</answer>" * 200_000, "1," * 500_000, "-1." * 300_000, "9" * 2_000_000,
               "<answer>" + "(" * 1_000_000 + "</answer>", "1/" * 500_000]
    for text in hostile:
        start = time.perf_counter()
        extract_answer(text)
        last_number(text)
        assert time.perf_counter() - start < 2.0, text[:20]


# ---------------------------------------------------------------------------- numeric tasks


def test_canonical_number():
    assert canonical_number("+01,000.500") == "1000.5"
    assert canonical_number("-0.0") == "0"
    assert canonical_number(" 12. ") == "12"
    assert canonical_number(".5") == "0.5"
    for bad in ("", "-", ".", "1e3", "１２", "12a", "1 2", "²"):
        assert canonical_number(bad) is None, bad


@pytest.mark.parametrize("task", ["basic_arithmetic", "chain_sum"])
def test_numeric_tasks_agree_with_reasoning_gym(task):
    v, scorer = build_verifier(task, "auto"), rg_scorer(task)
    assert v.in_process_safe
    for it in rg_items(task):
        assert v.score(it.answer, it).acc and scorer(it.answer, it.entry) == 1.0
        wrong = str(int(it.answer) + 1)
        assert not v.score(wrong, it).acc and scorer(wrong, it.entry) < 1.0
        assert v.score("0" + it.answer.lstrip("-") if not it.answer.startswith("-") else it.answer, it).acc
        sentence = f"The answer is {it.answer}"
        assert v.score(sentence, it).reward == pytest.approx(scorer(sentence, it.entry))
    assert v.score(None, it) == WRONG


def test_numeric_tolerates_formatting():
    it = PoolItem(0, "q", "-1234")
    v = NumericVerifier()
    for ok in ("-1234", "-1,234", " -01234 ", "-1234.00"):
        assert v.score(ok, it).acc, ok
    for bad in ("1234", "-1235", "-1234.5", "", "minus 1234"):
        assert not v.score(bad, it).acc, bad


def test_hot_path_is_fast():
    from rollwise.verify.guard import GuardedVerifier

    items = rg_items("basic_arithmetic", n=8)
    answers = [str(i * 37 % 1000) for i in range(512)]
    batch = [items[i % 8] for i in range(512)]
    with GuardedVerifier(build_verifier("basic_arithmetic", "auto")) as v:
        v.score_batch(answers, batch)
        start = time.perf_counter()
        v.score_batch(answers, batch)
        assert time.perf_counter() - start < 0.05
        assert v._pool is None  # an in-process-safe verifier never starts workers


# ---------------------------------------------------------------------------- countdown


def test_expression_grammar():
    assert evaluate_expression("(6 + 4) * 3 / 2 - -1") == (16, [6, 4, 3, 2, 1])
    assert evaluate_expression("0 + 10 * 100") == (1000, [0, 10, 100])
    for bad in ("2**3", "2^3", "1/0", "(1", "1)", "1 2", "3.5", "x", "1 = 1", "١+2", "２+2", "(" * 40 + "1" + ")" * 40,
                "1" * 13, "1+" * 200 + "1", "__import__('os')", "", "06 + 1", "3.", "3 × 2"):
        with pytest.raises(ValueError):
            evaluate_expression(bad)


def test_answer_expression_drops_one_sentence_period():
    assert answer_expression(" (6 + 4) * 3. ") == "(6 + 4) * 3"
    assert answer_expression("(6 + 4) * 3 .\n") == "(6 + 4) * 3"
    assert answer_expression("((6 + 4) * 3).") == "((6 + 4) * 3)"
    assert answer_expression("3..") == "3."  # one period only: the rest stays and is refused
    assert answer_expression("3") == "3" and answer_expression(".") == ""


def test_countdown_agrees_with_reasoning_gym_on_its_own_solutions():
    v, scorer = build_verifier("countdown", "auto"), rg_scorer("countdown")
    assert isinstance(v, CountdownVerifier) and v.in_process_safe
    for it in rg_items("countdown"):
        assert v.score(it.answer, it).acc and scorer(it.answer, it.entry) == 1.0
        nums = it.metadata["numbers"]
        drop_one = " + ".join(str(n) for n in nums[:-1])
        assert v.score(drop_one, it).reward == scorer(drop_one, it.entry) == 0.05
        assert v.score("hello", it).reward == scorer("hello", it.entry) == 0.01


def test_countdown_rules():
    it = PoolItem(0, "q", "(6+4)*3", {"numbers": [3, 4, 6], "target": 30})
    v = CountdownVerifier()
    assert v.score("(6 + 4) * 3", it).acc
    assert v.score("3*(4+6)", it).acc
    assert not v.score("(6 + 4) * 3 + 0", it).acc  # 0 is not a given number
    assert not v.score("6 * 5", it).acc  # 5 not given, 3 and 4 unused
    assert v.score("(6 + 4) * 3 = 30", it).reward == 0.01  # `=` is outside the grammar, as in reasoning-gym
    for sentence in ("(6 + 4) * 3.", "3*(4+6).", " 3 * (6 + 4) . "):  # answers that end a sentence
        assert v.score(sentence, it).acc, sentence
    assert v.score("(6 + 4) * 3..", it).reward == 0.01
    assert v.score("6 + 4 + 3.", it).reward == 0.05
    assert not v.score("6*4+3*2", it).acc


def test_puzzle24_needs_the_given_numbers():
    it = rg_items("puzzle24", n=1)[0]
    v = build_verifier("puzzle24", "auto")
    assert v.score(it.answer, it).acc
    assert v.score(it.answer + ".", it).acc and v.score(f"({it.answer}).", it).acc
    assert not v.score("6*4*1*1", PoolItem(0, "q", "", {"numbers": [8, 5, 10, 6]})).acc


# ---------------------------------------------------------------------------- knights and knaves


def test_knights_knaves_agrees_with_reasoning_gym():
    v, scorer = build_verifier("knights_knaves", "auto"), rg_scorer("knights_knaves")
    assert v.in_process_safe
    for it in rg_items("knights_knaves", n=10):
        assert v.score(it.answer, it).acc
        parts = it.answer.rstrip(".").split(", and ")
        reordered = ", and ".join(reversed(parts)) + "."
        assert v.score(reordered, it).acc and scorer(reordered, it.entry) == 1.0
        terms = it.metadata["knight_knave_terms"]
        knight, knave = terms["knight"], terms["knave"]
        flipped = it.answer.replace(knight, "@").replace(knave, knight).replace("@", knave)
        assert not v.score(flipped, it).acc
        for text in (flipped, it.answer.split(",")[0], "nobody", ""):
            assert v.score(text, it).reward == pytest.approx(scorer(text, it.entry)), text


# ---------------------------------------------------------------------------- math and exact (file items)


def test_math_verifier_equivalent_forms():
    v = build_verifier("file", "auto")
    assert isinstance(v, MathVerifier) and not v.in_process_safe
    half = PoolItem(0, "q", "1/2")
    for ok in ("0.5", "\\frac{1}{2}", "1/2", "$\\frac{1}{2}$", "\\boxed{0.5}"):
        assert v.score(ok, half).acc, ok
    for bad in ("2", "1/3", "0.51", "half", ""):
        assert not v.score(bad, half).acc, bad
    assert v.score("0.5", PoolItem(1, "q", "\\frac{1}{2}")).acc
    assert v.score("x + 1", PoolItem(2, "q", "1 + x")).acc
    v2 = pickle.loads(pickle.dumps(v))
    assert v2.score("0.5", half).acc


def test_math_quick_score_decides_plain_numbers_only():
    v = MathVerifier()
    assert v.quick_score("12", PoolItem(0, "q", "12")).acc
    assert v.quick_score("13", PoolItem(0, "q", "12")) == WRONG
    assert v.quick_score("0.5", PoolItem(0, "q", "1/2")) is None  # needs math-verify
    assert v.quick_score("0.333333", PoolItem(0, "q", "0.3333333")) is None  # math-verify rounds
    assert v.quick_score("1,000", PoolItem(0, "q", "1000")) is None


def test_exact_verifier_normalises():
    v = ExactVerifier()
    assert v.score("  Paris. ", PoolItem(0, "q", "paris")).acc
    assert v.score("１２", PoolItem(0, "q", "12")).acc  # full-width digits are the same number
    assert v.score("12.0", PoolItem(0, "q", "12")).acc
    assert not v.score("Lyon", PoolItem(0, "q", "Paris")).acc


def test_build_verifier_errors_and_fallback():
    with pytest.raises(ValueError, match="unknown verifier 'fuzzy'"):
        build_verifier("file", "fuzzy")
    with pytest.raises(ValueError, match="unknown task 'no_such_task'"):
        build_verifier("no_such_task", "auto")
    generic = build_verifier("spiral_matrix", "auto")
    assert isinstance(generic, ReasoningGymVerifier) and not generic.in_process_safe
    assert isinstance(build_verifier("countdown", "exact"), ExactVerifier)
    assert isinstance(build_verifier("countdown", "math"), MathVerifier)
