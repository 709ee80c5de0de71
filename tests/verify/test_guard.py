"""The verifier guard: hostile answers through every registered verifier, timeouts, crashes, counters.

The misbehaving verifiers are defined at module level so that worker processes can import them.
"""

import faulthandler
import itertools
import json
import os
import time
from dataclasses import dataclass

import pytest
import reasoning_gym  # noqa: F401  (loaded here so the workers' forkserver preloads it once)

from rollwise.data.pool import PoolItem, json_safe
from rollwise.verify.base import WRONG, Score
from rollwise.verify.sandbox import protocol
from rollwise.verify.guard import GuardedVerifier, precheck
from rollwise.verify.sandbox.protocol import ProtocolError, encode_ready, encode_result, parse_ready, parse_result
from rollwise.verify.verifiers import OWN_SCORERS, build_verifier

TIMEOUT = 0.5
HARD = TIMEOUT + 1.0  # the parent's backstop (timeout + max(1, timeout / 4))
START_SLACK = 15.0  # a replacement worker's start on two busy cores


@dataclass(frozen=True)
class MisbehavingVerifier:
    """Answers name the misbehaviour; anything else is compared with the reference."""

    name: str = "misbehaving"
    in_process_safe = False

    def score(self, answer, item):
        if answer == "sleep":  # interruptible: the worker's own timer stops it
            time.sleep(60)
        if answer == "spin":  # one long C call: only the parent's deadline stops it
            sum(itertools.repeat(1, 10**12))
        if answer == "swallow":  # a scorer whose bare except eats the timer's exception
            try:
                time.sleep(60)
            except BaseException:
                return Score(True, 1.0)
        if answer == "exit":
            os._exit(7)
        if answer == "segv":
            faulthandler._sigsegv()
        if answer == "hog":
            bytearray(4 * 2**30)
        if answer == "raise":
            raise ValueError("scorer bug")
        if answer == "nan":
            return Score(True, float("nan"))
        return Score(answer == item.answer, float(answer == item.answer))


class BrokenVerifier:
    name = "broken"
    in_process_safe = False

    def prepare(self):
        raise ImportError("missing dependency")

    def score(self, answer, item):
        return WRONG


def rg_item(task: str) -> PoolItem:
    e = json_safe(reasoning_gym.create_dataset(task, size=1, seed=5)[0])
    return PoolItem(0, e["question"], str(e["answer"]), e.get("metadata", {}), e)


def hostile_corpus(canary) -> list[str]:
    c = str(canary)
    code = [
        f"__import__('os').system('touch {c}')",
        f"open('{c}', 'w').write('x')",
        f"__import__('pathlib').Path('{c}').touch()",
        f"__import__('subprocess').run(['touch', '{c}'])",
        "().__class__.__bases__[0].__subclasses__()",
        f"(lambda: __import__('os').system('touch {c}'))()",
        f"exec(\"import os; os.system('touch {c}')\")",
        f"eval(\"__import__('os').system('touch {c}')\")",
        f"[k for k in ().__class__.__base__.__subclasses__() if k.__name__ == 'Popen'][0](['touch', '{c}'])",
        # sympy parse_expr resolves names through its namespace: reach the builtins through a Symbol
        f"Symbol('x').__class__.__init__.__globals__['__builtins__']['__import__']('os').system('touch {c}')",
        f"Function('f')(__import__('os').system('touch {c}'))",
        f"sympify(\"__import__('os').system('touch {c}')\")",
        f"\\boxed{{__import__('os').system('touch {c}')}}",
        f"$\\frac{{__import__('os').system('touch {c}')}}{{2}}$",
        f"[__import__('os').system('touch {c}')]",
    ]
    blowups = ["9**9**9**9", "2**2**2**2**2**2", "9^9^9^9", "\\frac{1}{0}", "1/0", "nan", "zoo"]
    sizes = ["9" * 10**6, "(" * 100_000 + "1" + ")" * 100_000, "x" * 2**20 + "1", "(" * 4000 + "1" + ")" * 4000,
             "[" * 4900 + "]" * 4900, "-" * 9000 + "1"]
    text = ["1\x002", b"\xff\xfe12".decode("utf-8", "surrogateescape"), "\u202e21", "1\u200b2", "１２", "1\u03012",
            "\ufeff12", "\U0001d7cf\U0001d7d0", "", " ", "\n" * 100]
    return code + blowups + sizes + text


def all_verifiers():
    """Every verifier build_verifier can return, plus reasoning-gym's eval-based spiral_matrix scorer."""
    cases = [(task, build_verifier(task, "auto"), rg_item(task)) for task in sorted(OWN_SCORERS)]
    cases.append(("spiral_matrix", build_verifier("spiral_matrix", "auto"), rg_item("spiral_matrix")))
    cases.append(("file-math", build_verifier("file", "math"), PoolItem(0, "q", "1/2")))
    cases.append(("file-exact", build_verifier("file", "exact"), PoolItem(0, "q", "7")))
    return [pytest.param(*case, id=case[0]) for case in cases]


def test_precheck():
    assert precheck("12") is None
    assert "longer" in precheck("1" * 10_001)
    assert "NUL" in precheck("1\x00")
    assert "surrogate" in precheck(b"\xff".decode("utf-8", "surrogateescape"))
    assert "not text" in precheck(b"12")


@pytest.mark.parametrize("name,verifier,item", all_verifiers())
def test_hostile_corpus(tmp_path, name, verifier, item):
    canary = tmp_path / "CANARY"
    with GuardedVerifier(verifier, workers=2, timeout=TIMEOUT) as guard:
        assert guard.score(item.answer, item).acc  # the reference itself is right
        for answer in hostile_corpus(canary):
            start = time.perf_counter()
            score = guard.score(answer, item)
            took = time.perf_counter() - start
            limit = 0.1 if verifier.in_process_safe else HARD + START_SLACK
            assert took < limit, (name, answer[:60], took)
            assert isinstance(score, Score) and 0.0 <= score.reward <= 1.0
            assert not score.acc, (name, answer[:60])
            assert not canary.exists(), (name, answer[:60])
        assert guard.score(item.answer, item).acc  # replaced workers still score correctly
        counts = guard.pop_counts()
        assert counts["rejected"] == 5  # megabyte texts, NUL, invalid UTF-8
        if verifier.in_process_safe:
            assert guard._pool is None and counts["timeouts"] == counts["errors"] == 0
    assert not canary.exists()


def test_batch_of_hostile_answers_keeps_order_and_is_deterministic(tmp_path):
    item = PoolItem(0, "q", "1/2")
    answers = ["0.5", "2/4", "\\frac{1}{2}", None, "1\x00", "3"] * 3 + hostile_corpus(tmp_path / "C")[:5]
    answers.append("9**9**9**9")
    with GuardedVerifier(build_verifier("file", "math"), workers=2, timeout=TIMEOUT) as guard:
        first = guard.score_batch(answers, [item] * len(answers))
    with GuardedVerifier(build_verifier("file", "math"), workers=1, timeout=TIMEOUT) as guard:
        second = guard.score_batch(answers, [item] * len(answers))
    assert first == second
    assert [s.acc for s in first[:6]] == [True, True, True, False, False, False]
    assert first[-1].error == "timeout" and first[4].error == "rejected" and first[3] == WRONG


def test_timeouts_crashes_and_counters():
    item = PoolItem(0, "q", "ok")
    answers = ["ok", "sleep", "ok", "spin", "exit", "ok", "segv", "hog", "raise", "swallow", "nan", "ok", "a\x00"]
    guard = GuardedVerifier(MisbehavingVerifier(), workers=2, timeout=TIMEOUT, memory_mb=512)
    start = time.perf_counter()
    # One prompt per answer: the breaker (per prompt) must not skip any of them.
    scores = guard.score_batch(answers, [PoolItem(i, "q", "ok") for i in range(len(answers))])
    took = time.perf_counter() - start
    assert [s.error for s in scores] == ["", "timeout", "", "timeout", "crash", "", "crash", "memory", "error",
                                         "timeout", "", "", "rejected"]
    assert [i for i, s in enumerate(scores) if s.acc] == [0, 2, 5, 10, 11]
    assert scores[10].reward == 0.0  # NaN reward cleaned
    assert took < 3 * HARD + 4 * START_SLACK
    zero = {"timeouts": 0, "errors": 0, "rejected": 0, "budget_exceeded": 0, "breaker_tripped": 0}
    assert guard.pop_counts() == {**zero, "timeouts": 3, "errors": 4, "rejected": 1}
    assert guard.pop_counts() == zero
    assert guard.score("ok", item).acc  # the pool recovered
    procs = [w.proc for w in guard._pool.slots if w is not None]
    guard.close()
    guard.close()  # twice is fine
    assert all(not p.is_alive() for p in procs)
    assert guard.score("ok", item).acc  # and starts again lazily after close
    del guard


def test_worker_that_cannot_start_is_a_clear_error():
    guard = GuardedVerifier(BrokenVerifier(), workers=1, timeout=TIMEOUT)
    with pytest.raises(RuntimeError, match="failing to start"):
        guard.score("1", PoolItem(0, "q", "1"))
    guard.close()


def test_unpicklable_verifier_is_refused_at_construction():
    class Local:
        name, in_process_safe = "local", False

        def score(self, answer, item):
            return WRONG

    with pytest.raises(ValueError, match="cannot be sent to worker processes"):
        GuardedVerifier(Local())


def test_length_mismatch_is_an_error():
    with GuardedVerifier(build_verifier("basic_arithmetic", "auto")) as guard, pytest.raises(ValueError):
        guard.score_batch(["1"], [])


# ---------------------------------------------------------------------------- the worker protocol


@pytest.mark.parametrize("line", [
    b"", b"[]", b"null", b"\xff", b'{"index":0,"acc":true,"reward":1.0}',
    b'{"index":0,"acc":1,"reward":1.0,"error":""}',
    b'{"index":0,"acc":true,"reward":-0.5,"error":""}', b'{"index":0,"acc":true,"reward":Infinity,"error":""}',
    b'{"index":0,"index":0,"acc":true,"reward":1.0,"error":""}', b'{"index":true,"acc":true,"reward":1.0,"error":""}',
    b'{"index":0,"acc":false,"reward":0.0,"error":"rm -rf"}', b'{"index":0,"acc":false,"reward":0.0,"error":"budget"}',
    b'{"index":0,"acc":false,"reward":true,"error":""}', b"[" * 5000 + b"]" * 5000,
])
def test_parse_result_refuses(line):
    with pytest.raises(ProtocolError):
        parse_result(line, expected=0)


def test_parse_result_accepts_exactly_the_expected_answer():
    line = encode_result(4, Score(False, 0.25)).rstrip(b"\n")
    assert parse_result(line, 4) == Score(False, 0.25)
    assert parse_result(b'{"error":"","reward":1,"acc":true,"index":2}', 2) == Score(True, 1.0)
    with pytest.raises(ProtocolError):
        parse_result(line, 5)
    assert json.loads(encode_result(1, Score(False, 0.0, "weird")))["error"] == "error"  # unknown errors coarsen


def test_line_reader_bounds_what_it_buffers():
    reader = protocol.LineReader(limit=16)
    assert list(reader.feed(b"ab\ncd")) == [b"ab"] and reader.pending
    assert list(reader.feed(b"e\n")) == [b"cde"]
    with pytest.raises(ProtocolError):
        list(reader.feed(b"x" * 17))
    lines = protocol.LineReader(limit=16).feed(b"ok\n" + b"y" * 20 + b"\n")
    assert next(lines) == b"ok"  # what came before the violation is still delivered, in order
    with pytest.raises(ProtocolError):
        next(lines)


def test_parse_ready():
    assert parse_ready(encode_ready({"seccomp": True, "uid": 65534, "degraded": ""}).rstrip()) == {
        "seccomp": True, "uid": 65534, "degraded": ""}
    for bad in ({"x": 1.5}, {"x": [1]}, {"x": "y" * 501}, {"": True}, {f"k{i}": True for i in range(65)}):
        with pytest.raises(ProtocolError):
            parse_ready(json.dumps({"ready": bad}).encode())
    with pytest.raises(ProtocolError):
        parse_ready(b'{"ready": {}, "extra": 1}')
