"""The verifier interface: score one completion's extracted answer against one pool item.

Selection, filtering and posteriors use `acc` (verified correct), never a shaped reward
(docs/methods.md section 0); `reward` is what the loss may use when `reward=score` is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rollwise.data.pool import PoolItem


@dataclass(frozen=True)
class Score:
    """acc: verified correct. reward: the verifier's (possibly shaped) score in [0, 1].

    `error` names what went wrong when the guard had to intervene (timeout, crash, rejected input).
    """

    acc: bool
    reward: float
    error: str = ""

    @property
    def scored(self) -> bool:
        """False when the verifier never judged the answer (see UNSCORED): it is not wrong, only unknown."""
        return self.error not in UNSCORED


# Errors that say nothing about the answer's correctness: it ran out of time, the batch ran out of
# time, or the breaker skipped it. Training masks such answers out (docs/sandbox.md); an answer that
# crashed its scorer, hit the memory limit or a refused call ("crash", "memory", "blocked", "error")
# or was refused before scoring ("rejected") is the answer's own doing and counts as wrong.
UNSCORED = frozenset({"timeout", "budget", "breaker"})
WRONG = Score(False, 0.0)


class Verifier(Protocol):
    """Scores answers. Must be picklable so that the guard can run it in worker processes."""

    name: str

    def score(self, answer: str | None, item: PoolItem) -> Score: ...
