"""Fixtures shared by every test directory. Helper code lives in tests/support/ (test modules import it,
never each other); per-directory fixtures in that directory's conftest.py."""

import pytest

from tests.support.models import save_hf_model


@pytest.fixture(scope="module")
def hf_model_dir(tmp_path_factory):
    """A tiny randomly initialised Llama with a word-level tokenizer, saved as a Hugging Face directory."""
    return save_hf_model(tmp_path_factory.mktemp("hf-model"))
