"""The verifier sandbox: each escape the review reproduced, through real sandboxed workers.

Hostile answers run through `ExecVerifier` (a scorer that executes its answer, as several
reasoning-gym scorers do) or reasoning-gym's own eval-based spiral_matrix scorer. Most attacks
run twice: as written, and after disarming the audit hook (hostile code can rewrite the module
globals the hook reads), so that the OS layers alone must stop them. A canary file must never
appear. The verifiers live in tests/support/sandbox.py and the rogue worker at module level here: worker
processes import them.
"""

import os
import pickle
import resource
import shutil
import struct
import subprocess
import time
import warnings

import pytest

from rollwise.data.pool import PoolItem, json_safe
from rollwise.verify.sandbox import seccomp, supervisor
from rollwise.verify.base import Score
from rollwise.verify.guard import GuardedVerifier
from rollwise.verify.sandbox.protocol import encode_ready, encode_result, read_job
from rollwise.verify.sandbox.settings import KEEP_ENVIRONMENT, SandboxPolicy
from rollwise.verify.verifiers import build_verifier
from tests.support.sandbox import DISARM, ExecVerifier, RogueVerifier, need

TIMEOUT = 2.0


class Touch:
    """Unpickling this runs `touch path`: what a worker could send a trainer that unpickles."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def pickle_frame(path) -> bytes:
    data = pickle.dumps(Touch(path))
    return struct.pack("!i", len(data)) + data  # multiprocessing's framing of Connection.send


ROGUE = {  # answer -> what the rogue worker sends back for it
    "ok": lambda i, item: encode_result(i, Score(True, 1.0)),
    "garbage": lambda i, item: b"\x80\x81\xfe not json\n",
    "pickle": lambda i, item: pickle_frame(item.prompt) + b"\n",
    "duplicate": lambda i, item: encode_result(i, Score(True, 1.0)) * 2,
    "reward": lambda i, item: b'{"index":%d,"acc":true,"reward":1.5,"error":""}\n' % i,
    "nan": lambda i, item: b'{"index":%d,"acc":true,"reward":NaN,"error":""}\n' % i,
    "other_index": lambda i, item: encode_result(i + 1000, Score(True, 1.0)),
    "extra_key": lambda i, item: b'{"index":%d,"acc":true,"reward":1.0,"error":"","x":1}\n' % i,
    "string_index": lambda i, item: b'{"index":"%d","acc":true,"reward":1.0,"error":""}\n' % i,
    "failed_but_right": lambda i, item: b'{"index":%d,"acc":true,"reward":1.0,"error":"timeout"}\n' % i,
    "huge": lambda i, item: b"1" * 2**20,
}


def rogue_worker(job_conn, result_conn, verifier, timeout, memory_mb, policy=None):
    """Stands in for worker_main: speaks the protocol, and breaks it where the answer says so."""
    out, inp = result_conn.fileno(), job_conn.fileno()
    os.write(out, verifier.ready or encode_ready({"rogue": True}))
    while True:
        job = read_job(inp)
        if job is None:
            return
        for index, answer, item in job:
            data = ROGUE[answer](index, item)
            while data:
                data = data[os.write(out, data):]


def separate_uid_expected() -> bool:
    """Root with uid 65534 in its user namespace (not e.g. a rootless container that lacks it)."""
    if os.geteuid() != 0:
        return False
    with open("/proc/self/uid_map") as f:
        return any(int(a) <= 65534 < int(a) + int(n) for a, _, n in map(str.split, f))


def rg_item(task: str) -> PoolItem:
    import reasoning_gym

    e = json_safe(reasoning_gym.create_dataset(task, size=1, seed=5)[0])
    return PoolItem(0, e["question"], str(e["answer"]), e.get("metadata", {}), e)


def attacks(canary, trainer_pid: int) -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (code, protections it needs). Each sets ok = True only if the attack worked."""
    c = str(canary)
    return {
        "sqlite3_create": (f"import sqlite3\nsqlite3.connect({c!r}).execute('create table t(x)')\nok = True",
                           ("readonly_filesystem",)),
        "fork_exec": ("import multiprocessing.util as u\n"
                      f"ok = u.spawnv_passfds(b'/usr/bin/touch', [b'touch', {c.encode()!r}], []) > 0", ("seccomp",)),
        "os_fork": (f"import os\npid = os.fork()\nif pid == 0:\n    open({c!r}, 'w')\n    os._exit(0)\nok = True",
                    ("seccomp",)),
        "exec": (f"import os\nos.execv('/usr/bin/touch', ['touch', {c!r}])", ("seccomp",)),
        "socket": ("import socket\ns = socket.socket()\nok = True", ("seccomp",)),
        "setrlimit_raise": ("import resource\n"
                            "resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)\n"
                            "ok = resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY",
                            ("seccomp",)),
        "memfd_create": ("import os\nfd = os.memfd_create('x')\nos.write(fd, b'x' * 2**26)\nok = True", ("seccomp",)),
        "prlimit_trainer": (f"import resource\nresource.prlimit({trainer_pid}, resource.RLIMIT_NOFILE, (64, 64))\n"
                            "ok = True", ("pid_namespace",)),
        "prlimit_template": ("import os, resource\nresource.prlimit(os.getppid(), resource.RLIMIT_AS, (2**20,) * 2)\n"
                             "ok = True", ("seccomp",)),
        "pidfd_trainer": (f"import os\nos.pidfd_open({trainer_pid})\nok = True", ("pid_namespace",)),
        "kill_template": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nok = True", ("seccomp",)),
        "see_trainer": (f"import os\nok = os.path.exists('/proc/{trainer_pid}/cmdline')", ("private_proc",)),
        "write_tmp_dir": (f"open({c!r}, 'w').write('x')\nok = True", ("readonly_filesystem",)),
        "os_open_tmp_dir": (f"import os\nos.open({c!r}, os.O_CREAT | os.O_WRONLY)\nok = True",
                            ("readonly_filesystem",)),
        "mkdir_tmp_dir": (f"import os\nos.mkdir({c!r})\nok = True", ("readonly_filesystem",)),
        "environment": ("import os\n"
                        "ok = any(open(f'/proc/self/{n}', 'rb').read().strip(b'\\0') for n in ('environ', 'cmdline'))"
                        f" or bool(set(os.environ) - set({list(KEEP_ENVIRONMENT)!r}))",
                        ("linux",)),  # needs no kernel feature
        "write_pipes": ("import os\n" f"payload = {pickle_frame(c)!r}\n"
                        "for fd in range(64):\n    try:\n        os.write(fd, payload)\n    except OSError:\n"
                        "        pass\n", ()),
    }


@pytest.mark.parametrize("disarmed", [False, True], ids=["as-written", "audit-hook-disarmed"])
def test_escapes_fail(tmp_path, report, disarmed):
    canary = tmp_path / "CANARY"
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    item = PoolItem(0, "q", "reference")
    cases = attacks(canary, os.getpid())
    with GuardedVerifier(ExecVerifier(), workers=2, timeout=TIMEOUT) as guard:
        names = [n for n, (_, needs) in cases.items() if all(report.get(k) for k in needs)]
        answers = [(DISARM if disarmed else "") + cases[n][0] for n in names]
        scores = guard.score_batch(answers + ["reference"], [item] * (len(answers) + 1))
    for name, score in zip(names, scores):
        assert not score.acc, (name, score)
        assert score.error in ("blocked", "error", "crash", ""), (name, score)
    assert scores[-1].acc  # the workers still score after all that
    assert not canary.exists()
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == nofile  # the trainer's limits are untouched
    skipped = sorted(set(cases) - set(names))
    if skipped:
        warnings.warn(f"attacks not run for lack of kernel features: {skipped} ({report.get('degraded')})")


def test_protections_match_what_the_kernel_allows(report):
    """A feature the kernel demonstrably has must be active: degradation only where it must be."""
    if not report.get("linux"):
        pytest.skip("not Linux")
    with open("/proc/self/status") as f:
        if "Seccomp:" in f.read() and seccomp.architecture() is not None:
            assert report["seccomp"], report["degraded"]
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to check the namespaces independently")
    probe = ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--net", "--ipc", "--uts", "--fork", "true"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        for name in ("user", "mount", "pid", "network", "ipc", "uts"):
            assert report[f"{name}_namespace"], (name, report["degraded"])
        assert report["readonly_filesystem"] and report["private_proc"] and report["no_network"]
        assert report["separate_uid"] or not separate_uid_expected()


def test_os_layers_say_blocked(tmp_path, report):
    """With the audit hook disarmed, seccomp itself kills a process-creating or socket answer."""
    need(report, "seccomp")
    cases = attacks(tmp_path / "CANARY", os.getpid())
    item = PoolItem(0, "q", "reference")
    with GuardedVerifier(ExecVerifier(), workers=1, timeout=TIMEOUT) as guard:
        for name in ("fork_exec", "os_fork", "socket", "memfd_create", "kill_template"):
            assert guard.score(DISARM + cases[name][0], item).error == "blocked", name
        assert guard.score(DISARM + "bytearray(2**33)", item).error == "memory"  # the hard memory limit


def test_poisoning_answer_cannot_change_the_next_score():
    """An answer patches the scorer's module; the next answers are scored by untouched processes."""
    item = rg_item("spiral_matrix")
    poison = ("setattr(__import__('rollwise.verify.verifiers', fromlist=['_']), 'from_reward', "
              "lambda value: __import__('rollwise.verify.verifiers', fromlist=['_']).RIGHT) or []")
    wrong = "1 2 3"
    with GuardedVerifier(build_verifier("spiral_matrix", "auto"), workers=1, timeout=TIMEOUT) as guard:
        assert guard.score(wrong, item) == Score(False, 0.0)
        scores = guard.score_batch([poison, wrong, wrong, item.answer], [item] * 4)
        assert [s.acc for s in scores[1:]] == [False, False, True]
        patch_class = ("import tests.support.sandbox as m\n"
                       "m.ExecVerifier.score = lambda self, answer, item: m.Score(True, 1.0)")
        exec_guard = GuardedVerifier(ExecVerifier(), workers=1, timeout=TIMEOUT)
        scores = exec_guard.score_batch([patch_class, "ok = False"], [PoolItem(0, "q", "reference")] * 2)
        exec_guard.close()
        assert scores[0] == Score(False, 0.0)  # the patch ran (no error: the module imported) ...
        assert not scores[1].acc  # ... and did not reach the next answer


def test_rogue_worker_breaking_the_protocol_is_a_crash(tmp_path, monkeypatch):
    """Whatever a worker sends, the trainer reads at most a line, never unpickles, charges a crash."""
    monkeypatch.setattr(supervisor, "worker_main", rogue_worker)
    canary = tmp_path / "CANARY"
    item = PoolItem(0, str(canary), "x")
    bad = [k for k in ROGUE if k not in ("ok", "duplicate")]
    answers = [a for k in bad for a in ("ok", k)] + ["ok"]
    with GuardedVerifier(RogueVerifier(), workers=1, timeout=TIMEOUT) as guard:
        scores = guard.score_batch(answers, [item] * len(answers))
        counts = guard.pop_counts()
        # A second line for an answer already scored: the answer after it takes the blame.
        assert guard.score_batch(["duplicate", "ok", "ok"], [item] * 3) == [
            Score(True, 1.0), Score(False, 0.0, "crash"), Score(True, 1.0)]
    assert [s.acc for s in scores[::2]] == [True] * (len(bad) + 1)
    assert scores[1::2] == [Score(False, 0.0, "crash")] * len(bad)
    assert counts["errors"] == len(bad)
    assert not canary.exists()


def test_rogue_ready_message_is_a_start_failure(monkeypatch):
    monkeypatch.setattr(supervisor, "worker_main", rogue_worker)
    for ready in (b'{"ready": {"x": [1, 2]}}\n', pickle_frame("/nonexistent") + b"\n", b'{"index": 0}\n'):
        guard = GuardedVerifier(RogueVerifier(ready=ready), workers=1, timeout=TIMEOUT)
        with pytest.raises(RuntimeError, match="failing to start"):
            guard.score("x", PoolItem(0, "q", "y"))
        guard.close()


def test_batch_budget_charges_the_rest():
    item = PoolItem(0, "q", "reference")
    slow = "import time\ntime.sleep(0.4)\nok = True"
    with GuardedVerifier(ExecVerifier(), workers=1, timeout=TIMEOUT, batch_budget=1.5) as guard:
        guard.score("reference", item)  # started
        start = time.perf_counter()
        scores = guard.score_batch([slow] * 12, [item] * 12)
        took = time.perf_counter() - start
        counts = guard.pop_counts()
        # The next batch has its own budget. The worker killed at the deadline restarts first, outside it: a
        # fresh worker's start-up (fork, imports, sandbox) counts against a batch's budget, and on a loaded
        # machine it alone can take longer than this test's 1.5 s.
        assert guard.protections["sandbox"]  # waits until a worker is ready
        assert guard.score(slow, item).acc
    budget = [s for s in scores if s.error == "budget"]
    assert 1 <= sum(s.acc for s in scores) <= 4 and len(budget) == 12 - sum(s.acc for s in scores)
    assert counts["budget_exceeded"] == len(budget) and counts["timeouts"] == 0
    assert took < 1.5 + 1.0


def test_breaker_fails_the_rest_of_a_batch_fast():
    item = PoolItem(0, "q", "reference")
    spin = "while True:\n    pass"
    with GuardedVerifier(ExecVerifier(), workers=1, timeout=0.3, breaker_timeouts=2, breaker_rate=0.5) as guard:
        start = time.perf_counter()
        scores = guard.score_batch([spin] * 10, [item] * 10)
        took = time.perf_counter() - start
        assert [s.error for s in scores] == ["timeout"] * 2 + ["breaker"] * 8
        assert guard.pop_counts() == {"timeouts": 2, "errors": 0, "rejected": 0, "budget_exceeded": 0,
                                      "breaker_tripped": 8}
        # a low rate does not trip it: at the second timeout, 2 of the 8 answers finished is 0.25 < 0.5
        mixed = guard.score_batch(["ok = True"] * 4 + [spin, "ok = True", "ok = True", spin, "ok = True"],
                                  [item] * 9)
        assert [s.error for s in mixed] == [""] * 4 + ["timeout", "", "", "timeout", ""]
        assert mixed[-1].acc
    assert took < 2 * (0.3 + 1.0) + 10


def test_protections_are_reported_and_measured(report):
    assert report["sandbox"] is True and report["fork_per_answer"] is True and report["audit_hook"] is True
    assert isinstance(report["degraded"], str)
    if report.get("linux"):
        assert report["memory_limit_mb"] >= 1024 and report["file_size_limit"] == 0
        assert report["no_new_privs"] and report["parent_death_signal"] and report["environment_cleared"]
        if separate_uid_expected():
            assert report["uid"] == 65534 and report["separate_uid"]
    with GuardedVerifier(build_verifier("countdown", "auto")) as guard:
        assert guard.protections == {"sandbox": False, "in_process_safe": True}


@pytest.mark.parametrize("policy,expect", [
    (SandboxPolicy(namespaces=("mount", "pid", "network", "ipc", "uts")), {"user_namespace": False}),
    (SandboxPolicy(readonly="remount"), {"readonly_filesystem": True}),
    (SandboxPolicy(seccomp=False), {"seccomp": False}),
], ids=["no-user-namespace", "remount-each", "no-seccomp"])
def test_fallbacks_still_confine(tmp_path, report, policy, expect):
    """Each degraded path: still unprivileged, still read-only, still no escape to the canary."""
    need(report, "user_namespace", "readonly_filesystem", "seccomp")
    if "user" not in policy.namespaces and os.geteuid() != 0:
        pytest.skip("without a user namespace only root can create namespaces")
    canary = tmp_path / "CANARY"
    item = PoolItem(0, "q", "reference")
    cases = attacks(canary, os.getpid())
    names = ["sqlite3_create", "write_tmp_dir", "os_open_tmp_dir", "see_trainer", "prlimit_trainer"]
    with GuardedVerifier(ExecVerifier(), workers=1, timeout=TIMEOUT, sandbox=policy) as guard:
        got = guard.protections
        for key, value in expect.items():
            assert got[key] == value, (key, got)
        assert got["readonly_filesystem"] and got["pid_namespace"]
        assert got["separate_uid"] or not separate_uid_expected()
        scores = guard.score_batch([DISARM + cases[n][0] for n in names] + ["reference"], [item] * 6)
    assert [s.acc for s in scores] == [False] * 5 + [True]
    assert not canary.exists()


def test_without_seccomp_nothing_an_answer_starts_outlives_it(report):
    """Without seccomp an answer can fork; its process must not live on to kill the next answers."""
    need(report, "pid_namespace", "user_namespace")
    killer = DISARM + ("import os, time\n"
                       "if os.fork() == 0:\n"
                       "    end = time.time() + 5\n"
                       "    while time.time() < end:\n"
                       "        for pid in set(range(2, 100)) - {os.getpid()}:\n"
                       "            try:\n"
                       "                os.kill(pid, 9)\n"
                       "            except OSError:\n"
                       "                pass\n"
                       "        time.sleep(0.005)\n"
                       "    os._exit(0)\n"
                       "time.sleep(0.05)\n")
    item = PoolItem(0, "q", "reference")
    with GuardedVerifier(ExecVerifier(), workers=1, timeout=TIMEOUT, sandbox=SandboxPolicy(seccomp=False)) as guard:
        assert guard.protections["seccomp"] is False
        scores = guard.score_batch([killer] + ["import time\ntime.sleep(0.05)\nok = True"] * 4, [item] * 5)
    assert [s.acc for s in scores[1:]] == [True] * 4


# ---------------------------------------------------------------------------- the filter program


def test_seccomp_program_shape():
    """Hand-checked structure: architecture check first, x32 refused, one rule per known call."""
    arch = (0, 0xC000003E)
    program = seccomp.compile_filter(seccomp.template_rules(), arch, newest=seccomp.LAST_REVIEWED)
    ins = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    assert ins[0] == (0x20, 0, 0, 4) and ins[1] == (0x15, 1, 0, 0xC000003E) and ins[2] == (0x06, 0, 0, seccomp.KILL)
    assert ins[4] == (0x35, 0, 1, 0x40000000) and ins[5] == (0x06, 0, 0, seccomp.KILL)
    assert ins[-1] == (0x06, 0, 0, seccomp.ALLOW)
    execve = ins.index((0x15, 0, 1, 59))  # execve on x86_64, then its action
    assert ins[execve + 1] == (0x06, 0, 0, seccomp.KILL)
    aarch64 = seccomp.compile_filter(seccomp.template_rules(), (1, 0xC00000B7))
    assert (0x15, 0, 1, 221) in [struct.unpack("=HBBI", aarch64[i:i + 8]) for i in range(0, len(aarch64), 8)]
    assert seccomp.answer_filter(4242, arch).count(struct.pack("=I", 4242)) == 5
