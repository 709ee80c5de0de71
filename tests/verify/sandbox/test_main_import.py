"""The verifier template does not carry what the caller's main script imported.

multiprocessing re-runs the parent's main script in each forkserver child; a training script imports
torch, and a template holding torch forks each answer at half the rate. The script here imports a
marker module (the stand-in for torch) and asks, through a verifier, whether the scoring process has it.
A verifier defined in the script itself still works: then the script must be imported.
"""

import subprocess
import sys

from tests.support import REPO

SCRIPT = """
import tests.support.main_marker
from dataclasses import dataclass
from rollwise.data.pool import PoolItem
from rollwise.verify.base import Score
from rollwise.verify.guard import GuardedVerifier
from tests.support.sandbox import LoadedVerifier

@dataclass(frozen=True)
class ScriptVerifier:
    name: str = "script"
    in_process_safe = False

    def score(self, answer, item):
        return Score(answer == item.answer, 1.0 if answer == item.answer else 0.0)

if __name__ == "__main__":
    item = PoolItem(0, "q", "7")
    with GuardedVerifier(LoadedVerifier(module="tests.support.main_marker"), workers=1) as guard:
        print("marker in template:", guard.score("7", item).acc)
    with GuardedVerifier(ScriptVerifier(), workers=1) as guard:
        print("script verifier:", guard.score("7", item).acc, guard.score("8", item).acc)
"""


def test_the_template_does_not_import_the_callers_script_unless_its_verifier_lives_there(tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "marker in template: False" in out.stdout, out.stdout
    assert "script verifier: True False" in out.stdout, out.stdout
