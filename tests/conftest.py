"""Fixtures shared by every test directory. Helper code lives in tests/support/ (test modules import it,
never each other); per-directory fixtures in that directory's conftest.py."""

import pytest

from tests.support.models import save_hf_model


@pytest.fixture(scope="module")
def hf_model_dir(tmp_path_factory):
    """A tiny randomly initialised Llama with a word-level tokenizer, saved as a Hugging Face directory."""
    return save_hf_model(tmp_path_factory.mktemp("hf-model"))


@pytest.fixture(autouse=True)
def _training_needs_the_slow_marker(request, monkeypatch):
    """A test that builds a training run (rollwise.train.train past its run-directory checks, or
    rollwise.run.build_run) or warms up a tiny model must be marked `slow`, so that `-m "not slow"` stays the
    fast subset (docs/development.md). Runs in a subprocess (the command line, compare's launcher) and other
    frameworks' trainers (TRL, verl) are not seen here: mark those by hand."""
    if request.node.get_closest_marker("slow") is not None:
        return
    import rollwise.policy.warmup as warmup
    import rollwise.run as run
    import rollwise.train as recipe

    def refuse(what):
        def refused(*args, **kwargs):
            pytest.fail(f"{request.node.nodeid} {what}: mark it @pytest.mark.slow", pytrace=False)
        return refused

    monkeypatch.setattr(recipe, "build_run", refuse("builds a training run"))
    monkeypatch.setattr(run, "build_run", refuse("builds a training run"))
    monkeypatch.setattr(warmup, "warm_up", refuse("warms up a tiny model"))
