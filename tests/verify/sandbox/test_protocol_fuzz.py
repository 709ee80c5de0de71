"""The worker protocol cannot be broken by its content: every malformed line is a crash of its sender.

Each kind of malformed value (huge integers, NaN and infinities, deep nesting, wrong types) goes
through the parser, through the template's reader (an answer writes the line onto its own result
pipe, as hostile code can) and through the trainer's reader (a rogue worker sends it). Readers
must charge "crash" to that answer only and keep serving: the template is not restarted.
"""

import os

import pytest

from rollwise.data.pool import PoolItem
from rollwise.verify.sandbox import supervisor
from rollwise.verify.base import Score
from rollwise.verify.guard import GuardedVerifier
from rollwise.verify.sandbox.protocol import ProtocolError, encode_ready, encode_result, parse_ready, parse_result, read_job
from tests.support.sandbox import ExecVerifier, RogueVerifier

BIG = "1" + "0" * 400  # parses; math.isfinite(int) overflows
FIELDS = {"index": "%d", "acc": "true", "reward": "1.0", "error": '""'}


def result_line(position, **raw: str) -> bytes:
    """A result line with some fields replaced by raw JSON text (index "%d": left for the answer to fill)."""
    fields = {**FIELDS, **raw}
    body = ",".join(f'"{k}":{v}' for k, v in fields.items())
    return ("{" + body + "}").replace("%d", str(position), 1).encode()


MALFORMED = {  # name -> line for answer `index`
    "huge_reward": lambda i: result_line(i, reward=BIG),
    "huge_negative_reward": lambda i: result_line(i, reward="-" + BIG),
    "huge_index": lambda i: result_line(i, index=BIG),
    "over_digit_limit": lambda i: result_line(i, reward="9" * 5000),
    "nan": lambda i: result_line(i, reward="NaN"),
    "infinity": lambda i: result_line(i, reward="-Infinity"),
    "float_overflow": lambda i: result_line(i, reward="1e999"),
    "deep_list": lambda i: result_line(i, reward="[" * 1500 + "]" * 1500),
    "deep_object": lambda i: result_line(i, error='{"a":' * 1500 + "1" + "}" * 1500),
    "acc_int": lambda i: result_line(i, acc="1"),
    "reward_text": lambda i: result_line(i, reward='"1.0"'),
    "reward_bool": lambda i: result_line(i, reward="true"),
    "reward_object": lambda i: result_line(i, reward='{"x": 1}'),
    "error_null": lambda i: result_line(i, error="null"),
    "error_surrogate": lambda i: result_line(i, error='"\\ud800"'),
    "index_float": lambda i: result_line(i, index=f"{i}.0"),
    "top_level_list": lambda i: b"[1, 2, 3]",
    "top_level_null": lambda i: b"null",
    "bad_utf8": lambda i: b'{"index": \xff}',
    "empty": lambda i: b"",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_parser_raises_only_protocol_error(name):
    with pytest.raises(ProtocolError):
        parse_result(MALFORMED[name](3), expected=3)


@pytest.mark.parametrize("value", [BIG, "9" * 5000, "NaN", "1e999", "[" * 1500 + "]" * 1500, '{"a": [1]}'])
def test_ready_parser_raises_only_protocol_error(value):
    with pytest.raises(ProtocolError):
        parse_ready(b'{"ready": {"uid": ' + value.encode() + b"}}")


# An answer that writes its own result line, with its real index, onto every descriptor it has (its
# result pipe among them) and leaves before the scorer's line: the template reads the forged line.
FORGE = ("import os, sys\n"
         "f = sys._getframe()\n"
         "while 'index' not in f.f_locals:\n"
         "    f = f.f_back\n"
         "line = LINE.replace(b'%d', str(f.f_locals['index']).encode(), 1) + b'\\n'\n"
         "for fd in range(3, 64):\n"
         "    try:\n"
         "        os.write(fd, line)\n"
         "    except OSError:\n"
         "        pass\n"
         "os._exit(0)\n")


def forged(name: str) -> str:
    return f"LINE = {MALFORMED[name]('%d')!r}\n" + FORGE


def test_template_reader_charges_the_forger_only():
    """Before the fix a 400-digit reward killed the template (OverflowError): one restart per answer."""
    item = PoolItem(0, "q", "reference")
    names = sorted(MALFORMED)
    answers = [a for n in names for a in (forged(n), "ok = True")]
    with GuardedVerifier(ExecVerifier(), workers=1, timeout=5.0) as guard:
        assert guard.score("ok = True", item).acc
        worker = guard._pool.slots[0].proc.pid
        scores = guard.score_batch(answers, [item] * len(answers))
        assert guard._pool.slots[0].proc.pid == worker, "the template died and was replaced"
    assert [s.error for s in scores[::2]] == ["crash"] * len(names), list(zip(names, scores[::2]))
    assert all(s.acc for s in scores[1::2])


def fuzz_worker(job_conn, result_conn, verifier, timeout, memory_mb, policy=None):
    """A worker that answers "ok" honestly and any MALFORMED name with that malformed line."""
    out, inp = result_conn.fileno(), job_conn.fileno()
    os.write(out, encode_ready({"rogue": True}))
    while True:
        job = read_job(inp)
        if job is None:
            return
        for index, answer, item in job:
            data = encode_result(index, Score(True, 1.0)) if answer == "ok" else MALFORMED[answer](index) + b"\n"
            while data:
                data = data[os.write(out, data):]


def test_trainer_reader_charges_the_sender_only(monkeypatch):
    monkeypatch.setattr(supervisor, "worker_main", fuzz_worker)
    names = sorted(MALFORMED)
    answers = [a for n in names for a in ("ok", n)] + ["ok"]
    item = PoolItem(0, "q", "x")
    with GuardedVerifier(RogueVerifier(), workers=1, timeout=5.0) as guard:
        scores = guard.score_batch(answers, [item] * len(answers))
    assert [s.acc for s in scores[::2]] == [True] * (len(names) + 1)
    assert [s.error for s in scores[1::2]] == ["crash"] * len(names), list(zip(names, scores[1::2]))
