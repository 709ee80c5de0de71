"""Verifiers for the sandbox tests, defined in an importable module because the sandbox's worker processes
import them: one that executes its answer, one that carries a rogue worker's ready message. DISARM is the
prefix of a hostile answer that turns off the audit hook, so that only the OS layers stand; need() skips a
test when the kernel lacks a protection (the `report` fixture: tests/verify/sandbox/conftest.py)."""

from dataclasses import dataclass

import pytest

from rollwise.verify.base import WRONG, Score


@dataclass(frozen=True)
class ExecVerifier:
    """Right for the reference answer; anything else is executed and is right when it sets ok = True."""

    name: str = "exec"
    in_process_safe = False

    def score(self, answer, item):
        if answer == item.answer:
            return Score(True, 1.0)
        scope = {}
        exec(answer, scope)
        return Score(True, 1.0) if scope.get("ok") is True else WRONG


@dataclass(frozen=True)
class RogueVerifier:
    """Carries what the rogue worker sends as its ready message."""

    name: str = "rogue"
    in_process_safe = False
    ready: bytes = b""

    def score(self, answer, item):
        return WRONG


# Rewrites the globals the audit hook reads: from here on only the OS layers stand.
DISARM = ("import rollwise.verify.sandbox.worker as w\n"
          "w._BLOCKED_PREFIXES = ('-',)\n"
          "w._WRITE_FLAGS = 0\n")


def need(report, *names):
    """Skip the test unless the kernel allows every protection named (the protections report)."""
    missing = [n for n in names if not report.get(n)]
    if missing:
        pytest.skip(f"kernel lacks {', '.join(missing)}: {report.get('degraded')}")


@dataclass(frozen=True)
class LoadedVerifier:
    """Right when module `name` is loaded in the process that scores: shows what the template carries."""

    name: str = "loaded"
    in_process_safe = False
    module: str = ""

    def score(self, answer, item):
        import sys

        return Score(True, 1.0) if self.module in sys.modules else WRONG
