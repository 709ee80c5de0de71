"""The sandbox tests' fixture: what the kernel lets the sandbox do (probed once per session)."""

import pytest

from rollwise.verify.guard import protections


@pytest.fixture(scope="session")
def report():
    """The guard's protections report: which layers this kernel allows (tests skip what it lacks: need())."""
    return protections()
