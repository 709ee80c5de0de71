"""The sandbox chain dies with the trainer, not one answer timeout later.

A trainer process (started here) scores an answer that sleeps far longer than the test waits; the
test kills the trainer with SIGKILL and checks that every process of its verifier chain (worker,
creator, template, answer: all started by that trainer) is gone within seconds.
"""

import os
import signal
import subprocess
import sys
import time

from tests.support import REPO

TRAINER = """
from rollwise.data.pool import PoolItem
from rollwise.verify.guard import GuardedVerifier
from tests.support.sandbox import ExecVerifier
if __name__ == "__main__":
    guard = GuardedVerifier(ExecVerifier(), workers=1, timeout=120.0, batch_budget=None)
    guard.protections
    print(guard._pool.slots[0].proc.pid, flush=True)
    guard.score("import time\\ntime.sleep(100)", PoolItem(0, "q", "reference"))
"""


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_chain_dies_with_the_trainer():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER], cwd=REPO, env=env, stdout=subprocess.PIPE)
    chain: set[int] = set()
    try:
        worker = int(trainer.stdout.readline())
        deadline = time.monotonic() + 30
        while len(chain) < 4 and time.monotonic() < deadline:  # creator, template, the sleeping answer
            time.sleep(0.2)
            chain = {worker} | descendants(worker)
        assert len(chain) >= 4, chain
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
        deadline = time.monotonic() + 5
        while any(alive(p) for p in chain) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in chain if alive(p)], "sandbox processes outlived the trainer"
    finally:
        trainer.kill()
        for pid in chain:  # only processes this test's trainer started
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
