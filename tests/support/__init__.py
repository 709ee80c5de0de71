"""Helpers the tests share: tiny run configurations, fake rollout parts, sandbox verifiers, synthetic runs
and data. Test modules import these (or the fixtures the conftests build on them), never each other."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout's root: docs/, examples/, README.md
