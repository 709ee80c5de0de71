"""No terminal, no host devices: an answer cannot reach or change the user's terminal.

The attack: through a scorer that evaluates its answer, open `/dev/pts/N` read-only
(the filter refused only write flags) and use terminal ioctls other than TIOCSTI: a null line
discipline kills the user's shell, echo and canonical mode turned off persist, and a plain read
steals what the user types. Each test opens its own pty with `os.openpty()` and touches nothing else.
"""

import errno
import fcntl
import os
import struct
import termios

import pytest

from rollwise.data.pool import PoolItem
from rollwise.verify.sandbox import seccomp
from rollwise.verify.guard import GuardedVerifier
from tests.support.sandbox import DISARM, ExecVerifier, need

N_NULL = 27  # the null line discipline
ITEM = PoolItem(0, "q", "reference")


@pytest.fixture
def pty():
    """(master, slave, path) of a pty this test owns; closed afterwards."""
    master, slave = os.openpty()
    try:
        yield master, slave, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def terminal_state(fd: int) -> tuple:
    discipline = struct.unpack("i", fcntl.ioctl(fd, termios.TIOCGETD, struct.pack("i", 0)))[0]
    return termios.tcgetattr(fd), discipline


def hijack(path: str) -> str:
    """Code that tries every terminal attack on `path` through a read-only descriptor; ok = any worked."""
    return (f"import fcntl, os, struct, termios\n"
            f"fd = os.open({path!r}, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)\n"
            "done = []\n"
            "def attempt(name, fn):\n"
            "    try:\n"
            "        fn()\n"
            "        done.append(name)\n"
            "    except Exception:\n"
            "        pass\n"
            "attempt('echo_off', lambda: termios.tcsetattr(fd, termios.TCSANOW, "
            "[0, 0, 0, 0, termios.B38400, termios.B38400, [b'\\0'] * 32]))\n"
            f"attempt('null_discipline', lambda: fcntl.ioctl(fd, termios.TIOCSETD, struct.pack('i', {N_NULL})))\n"
            "attempt('steal', lambda: os.read(fd, 100) or None)\n"
            "ok = bool(done)\n")


def test_the_filter_refuses_terminal_ioctls_on_a_read_only_descriptor(pty):
    """The seccomp layer alone: even with the terminal open, no ioctl outside the allow-list works."""
    arch = seccomp.architecture()
    if arch is None:
        pytest.skip("no seccomp filter for this machine")
    master, slave, path = pty
    before = terminal_state(slave)
    pid = os.fork()
    if pid == 0:
        failures = 0
        try:
            seccomp.install(seccomp.compile_filter(seccomp.template_rules(), arch, newest=seccomp.LAST_REVIEWED))
            fd = os.open(path, os.O_RDONLY | os.O_NOCTTY)
            attempts = [lambda: termios.tcsetattr(fd, termios.TCSANOW,
                                                  [0, 0, 0, 0, termios.B38400, termios.B38400, [b"\0"] * 32]),
                        lambda: fcntl.ioctl(fd, termios.TIOCSETD, struct.pack("i", N_NULL)),
                        lambda: fcntl.ioctl(fd, termios.TIOCSCTTY, 0),
                        lambda: fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 1, 1, 0, 0))]
            for k, attempt in enumerate(attempts):
                try:
                    attempt()
                    failures |= 1 << k
                except (OSError, termios.error) as exc:  # termios.error is no OSError
                    if exc.args[0] != errno.ENOTTY:
                        failures |= 16
            if os.isatty(fd):  # TCGETS is refused too: nothing looks like a terminal
                failures |= 32
            fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4)  # allowed: harmless
        except BaseException:
            failures |= 64
        finally:
            os._exit(failures)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert terminal_state(slave) == before


def test_an_answer_cannot_reach_the_users_terminal(pty, report):
    """End to end: no /dev/pts in the sandbox, no terminal descriptor, and the pty is unchanged."""
    need(report, "mount_namespace")
    master, slave, path = pty
    before = terminal_state(slave)
    os.write(master, b"typed by the user\n")
    probes = [
        DISARM + hijack(path),  # the pty by name
        DISARM + hijack("/dev/tty"),  # the controlling terminal
        DISARM + hijack("/dev/console"),
        DISARM + hijack("/dev/ptmx"),
        DISARM + hijack("/proc/1/fd/2"),  # the template's stderr
        DISARM + "import os\nok = any(os.isatty(fd) for fd in range(256))\n",
        "import os\nok = any(n not in ('null', 'zero', 'urandom') for n in os.listdir('/dev'))\n",
    ]
    with GuardedVerifier(ExecVerifier(), workers=1, timeout=5.0) as guard:
        scores = guard.score_batch(probes + ["reference"], [ITEM] * (len(probes) + 1))
    assert [s.acc for s in scores] == [False] * len(probes) + [True], scores
    assert terminal_state(slave) == before
    os.set_blocking(slave, False)
    assert os.read(slave, 100) == b"typed by the user\n"  # nothing was stolen


def test_the_sandbox_has_its_own_minimal_dev(report):
    """Positive checks (they cannot pass by failing): exactly null, zero and urandom, all working."""
    need(report, "mount_namespace")
    check = ("import os\n"
             "names = sorted(os.listdir('/dev'))\n"
             "ok = (names == ['null', 'urandom', 'zero'] and open('/dev/null', 'rb').read() == b''\n"
             "      and open('/dev/zero', 'rb').read(4) == b'\\0' * 4\n"
             "      and len(open('/dev/urandom', 'rb').read(8)) == 8\n"
             "      and not os.path.exists('/dev/pts') and not os.path.exists('/dev/shm'))\n")
    with GuardedVerifier(ExecVerifier(), workers=1, timeout=5.0) as guard:
        assert guard.score(check, ITEM).acc
        got = guard.protections
    assert got["private_dev"] and got["no_terminal"] and got["no_capabilities"], got
    assert not got.get("read_all_files"), got


def test_no_capability_and_lazy_imports_still_work(report):
    """The read capability is gone; what it was kept for (Python under a directory the sandbox uid
    cannot search, e.g. /root at mode 0700) works through the bridge, and nothing else there shows."""
    need(report, "mount_namespace", "user_namespace")
    from rollwise.verify.sandbox.mounts import import_roots, reach_plan

    plan, _ = reach_plan(report["uid"], report["uid"], import_roots())
    shown = {d: sorted(os.path.basename(e) for e in entries) for d, entries in plan.items()}
    check = ("import os, difflib, fractions, xml.dom.minidom, email.mime.text, json.tool\n"
             f"ok = all(sorted(os.listdir(d)) == names for d, names in {shown!r}.items())\n")
    with GuardedVerifier(ExecVerifier(), workers=1, timeout=5.0) as guard:
        assert guard.score(check, ITEM).acc
        assert guard.protections["no_capabilities"]
