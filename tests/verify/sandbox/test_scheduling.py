"""Per-answer isolation of scheduling state: no answer can slow the answers after it.

The attack: an answer lowers its template's priority, changes its scheduling policy,
pins it to one CPU or gives it the idle I/O class (same uid, no signal needed); every later answer,
a fork of that template, inherits it. The calls that change these are refused.
"""

import ctypes
import os
import platform

from rollwise.data.pool import PoolItem
from rollwise.verify.guard import GuardedVerifier
from tests.support.sandbox import DISARM, ExecVerifier

ITEM = PoolItem(0, "q", "reference")
IOPRIO = {"x86_64": (251, 252), "aarch64": (30, 31)}.get(platform.machine())  # (ioprio_set, ioprio_get)


def ioprio() -> int | None:
    if IOPRIO is None:
        return None
    return ctypes.CDLL(None, use_errno=True).syscall(IOPRIO[1], 1, 0)  # IOPRIO_WHO_PROCESS, self


ATTACKS = {
    "nice_template": "import os\nos.setpriority(os.PRIO_PROCESS, os.getppid(), 19)\n",
    "nice_group": "import os\nos.setpriority(os.PRIO_PGRP, 0, 19)\n",
    "nice_user": "import os\nos.setpriority(os.PRIO_USER, os.getuid(), 19)\n",
    "affinity": "import os\nos.sched_setaffinity(os.getppid(), {min(os.sched_getaffinity(0))})\n",
    "policy": "import os\nos.sched_setscheduler(os.getppid(), os.SCHED_IDLE, os.sched_param(0))\n",
    "batch": "import os\nos.sched_setscheduler(os.getppid(), os.SCHED_BATCH, os.sched_param(0))\n",
}
if IOPRIO is not None:
    ATTACKS["io_idle"] = (f"import ctypes, os\nassert ctypes.CDLL(None, use_errno=True).syscall({IOPRIO[0]}, 1, "
                          "os.getppid(), 3 << 13) == 0\n")


def check() -> str:
    """An answer that is right only when its process has the trainer's (so the template's original) state."""
    code = DISARM + ("import ctypes, os\n"
                     f"ok = (os.getpriority(os.PRIO_PROCESS, 0) == {os.getpriority(os.PRIO_PROCESS, 0)}\n"
                     f"      and os.sched_getaffinity(0) == {os.sched_getaffinity(0)!r}\n"
                     f"      and os.sched_getscheduler(0) == {os.sched_getscheduler(0)})\n")
    if IOPRIO is not None:
        code += f"ok = ok and ctypes.CDLL(None, use_errno=True).syscall({IOPRIO[1]}, 1, 0) == {ioprio()}\n"
    return code


def test_scheduling_changes_do_not_reach_the_next_answer():
    answers = [a for attack in ATTACKS.values() for a in (DISARM + attack + "ok = True\n", check())]
    with GuardedVerifier(ExecVerifier(), workers=1, timeout=5.0) as guard:
        assert guard.score(check(), ITEM).acc, "the check itself must pass on a fresh template"
        scores = guard.score_batch(answers, [ITEM] * len(answers))
    names = list(ATTACKS)
    assert [s.acc for s in scores[1::2]] == [True] * len(names), list(zip(names, scores[1::2]))
    assert [s.acc for s in scores[::2]] == [False] * len(names), list(zip(names, scores[::2]))
