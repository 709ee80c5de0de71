"""The verl plug-in tests' fixture: a tiny pool in verl's parquet layout (tests/support/verl.py)."""

import pytest

from tests.support.verl import write_data_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A pool of sums 'i + 1' (rows in id order) and a held-out file, in verl's layout."""
    return write_data_dir(tmp_path_factory.mktemp("verl-data"))
