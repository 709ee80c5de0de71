"""The byte protocol between the trainer and its verifier workers.

Worker -> trainer is untrusted: a worker's process tree runs scorers on hostile text. It sends
one JSON object per line, at most MAX_LINE bytes, and the reader accepts exactly two shapes:

    {"ready": {"pid_namespace": true, "uid": 65534, ...}}              once, first
    {"index": 17, "acc": true, "reward": 1.0, "error": ""}             one per answer

Anything else (bad UTF-8 or JSON, NaN, duplicate or extra keys, wrong types, a reward outside
[0, 1] or too large to compare, an index other than the one expected, an over-long line) raises
ProtocolError and nothing else, which the reader treats as a crash of the sender. Nothing from
a worker is ever unpickled.

Trainer -> worker is trusted (the trainer wrote it): length-prefixed pickles of job chunks.

    >>> from rollwise.verify.base import Score
    >>> parse_result(encode_result(3, Score(True, 1.0)).rstrip(b"\\n"), expected=3)
    Score(acc=True, reward=1.0, error='')
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct

from rollwise.verify.base import Score

TIMEOUT, CRASH, ERROR, MEMORY, BLOCKED, REJECTED = "timeout", "crash", "error", "memory", "blocked", "rejected"
BUDGET, BREAKER = "budget", "breaker"
WORKER_ERRORS = ("", TIMEOUT, CRASH, ERROR, MEMORY, BLOCKED)  # what a worker may report
MAX_LINE = 8192
MAX_REPORT_ITEMS, MAX_REPORT_TEXT = 64, 500
_RESULT_KEYS = frozenset({"index", "acc", "reward", "error"})
_LENGTH = struct.Struct(">Q")


class ProtocolError(Exception):
    """A worker sent something other than the protocol allows: the worker counts as crashed."""


def checked(score) -> Score:
    """A verifier's result as a well-formed Score (acc bool, finite reward in [0, 1])."""
    if not isinstance(score, Score):
        raise TypeError(f"verifier returned {type(score).__name__}, not Score")
    reward = float(score.reward)
    if not math.isfinite(reward):
        reward = 0.0
    return Score(bool(score.acc), min(1.0, max(0.0, reward)), str(score.error))


def failed(error: str) -> Score:
    return Score(False, 0.0, error)


# ---------------------------------------------------------------------------- worker -> trainer


def encode_result(index: int, score: Score) -> bytes:
    error = score.error if score.error in WORKER_ERRORS else ERROR
    return _line({"index": index, "acc": bool(score.acc), "reward": float(score.reward), "error": error})


def encode_ready(protections: dict) -> bytes:
    return _line({"ready": protections})


def _line(obj) -> bytes:
    data = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode() + b"\n"
    if len(data) > MAX_LINE:
        raise ValueError(f"protocol message of {len(data)} bytes is over {MAX_LINE}")
    return data


class LineReader:
    """Splits a byte stream into lines, refusing any line (or unfinished tail) over `limit` bytes."""

    def __init__(self, limit: int = MAX_LINE):
        self.limit, self._buffer = limit, bytearray()

    def feed(self, data: bytes):
        """Yield the complete lines in order; raise where an over-long one starts (not before)."""
        self._buffer += data
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        for line in lines:
            if len(line) > self.limit:
                raise ProtocolError(f"worker message longer than {self.limit} bytes")
            yield bytes(line)
        if len(rest) > self.limit:
            raise ProtocolError(f"worker message longer than {self.limit} bytes")

    @property
    def pending(self) -> bool:
        return bool(self._buffer)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def parse_object(line: bytes) -> dict:
    """One JSON object, strictly: UTF-8, no NaN/Infinity, no duplicate keys."""
    if len(line) > MAX_LINE:
        raise ProtocolError(f"worker message longer than {MAX_LINE} bytes")
    try:
        obj = json.loads(line.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"worker message is not strict JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"worker message is a JSON {type(obj).__name__}, not an object")
    return obj


def parse_result(line: bytes, expected: int) -> Score:
    """The Score in a result line for answer `expected`; ProtocolError for anything else.

    Total: whatever the line holds (a 400-digit reward makes `math.isfinite` raise OverflowError),
    the only exception is ProtocolError, so a reader never dies of a line's content.
    """
    return _total(_parse_result, line, expected)


def _total(parse, *args):
    try:
        return parse(*args)
    except ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - any other failure on hostile bytes is the sender's
        raise ProtocolError(f"worker message could not be checked ({type(exc).__name__})") from None


def _parse_result(line: bytes, expected: int) -> Score:
    obj = parse_object(line)
    if set(obj) != _RESULT_KEYS:
        raise ProtocolError(f"result keys {sorted(obj)} are not {sorted(_RESULT_KEYS)}")
    index, acc, reward, error = obj["index"], obj["acc"], obj["reward"], obj["error"]
    if type(index) is not int or index != expected:
        raise ProtocolError(f"result for answer {str(index)[:20]!r} where {expected} was expected")
    if type(acc) is not bool or type(reward) not in (int, float) or type(error) is not str:
        raise ProtocolError("result fields have the wrong types")
    if not (math.isfinite(reward) and 0.0 <= reward <= 1.0) or error not in WORKER_ERRORS:
        raise ProtocolError(f"result reward {reward!r} or error {error[:40]!r} out of range")
    if error and (acc or reward != 0):
        raise ProtocolError("a failed result cannot be correct or rewarded")
    return Score(acc, float(reward), error)


def parse_ready(line: bytes) -> dict:
    """The protections a worker reported at start-up: short names to bool, int or short text (total, as
    `parse_result`)."""
    return _total(_parse_ready, line)


def _parse_ready(line: bytes) -> dict:
    obj = parse_object(line)
    report = obj.get("ready")
    if set(obj) != {"ready"} or not isinstance(report, dict) or len(report) > MAX_REPORT_ITEMS:
        raise ProtocolError("expected the ready message first")
    for key, value in report.items():
        ok = (type(value) is bool or (type(value) is int and abs(value) < 2**53)
              or (type(value) is str and len(value) <= MAX_REPORT_TEXT))
        if not (0 < len(key) <= 64 and ok):
            raise ProtocolError(f"ready message entry {key[:64]!r} is malformed")
    return report


# ---------------------------------------------------------------------------- trainer -> worker


def encode_job(job) -> bytes:
    data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def read_job(fd: int):
    """The next job from the trainer (blocking), or None at the end of the stream."""
    header = _read_exactly(fd, _LENGTH.size)
    if header is None:
        return None
    body = _read_exactly(fd, _LENGTH.unpack(header)[0])
    return None if body is None else pickle.loads(body)


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        data = os.read(fd, min(left, 1 << 20))
        if not data:
            return None
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)
