"""Configs, priors and pools bounded at the boundary.

- a 1 KB YAML config with aliases ("billion laughs") exhausted memory when an error message
  formatted its task_options: aliases and anchors are refused, in well under a second;
- a prior with successes = trials = 1e308 passed validation and gave NaN predictions, which were
  saved and accepted as the next run's prior;
- a 60 MB reference answer was accepted, and each score of it cost the trainer up to 0.16 s.
"""

import json
import time

import numpy as np
import pytest

from rollwise.config import RunConfig, load_yaml
from rollwise.data.jsonl import DataError
from rollwise.data.pool import MAX_REFERENCE_CHARS, PoolItem, PromptPool, load_file_pool
from rollwise.select.priors import build_prior
from rollwise.config.yamlfile import MAX_BYTES, ConfigYAMLError
from tests.support import REPO


def alias_bomb(levels: int = 12) -> str:
    lines = ['task_options:', '  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, levels):
        lines.append(f"  a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_config_is_refused_in_under_a_second(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 1200  # 9**12 strings once expanded
    start = time.perf_counter()
    with pytest.raises(ConfigYAMLError, match=r"bomb.yaml: line 2: anchors \(&name\) and aliases"):
        RunConfig.from_sources(yaml_path=path)
    assert time.perf_counter() - start < 1.0


def test_aliases_are_refused_on_the_command_line_too():
    from rollwise.config import coerce

    start = time.perf_counter()
    with pytest.raises(ConfigYAMLError, match="config task_options"):
        coerce("task_options", "{a: &x [1, 2], b: *x}", dict)
    assert time.perf_counter() - start < 1.0


def test_depth_and_size_are_bounded(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("task_options: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigYAMLError, match="nested deeper than"):
        load_yaml(deep)
    big = tmp_path / "big.yaml"
    big.write_text("steps: 1\n# " + "x" * MAX_BYTES + "\n")
    with pytest.raises(ConfigYAMLError, match="over the"):
        load_yaml(big)
    fine = tmp_path / "fine.yaml"
    fine.write_text("steps: 3\ntask_options: {min_terms: 2, max_terms: 2}\n")
    assert RunConfig.from_sources(yaml_path=fine).steps == 3


class Pool:
    """The prior only needs ids, lookups and hashes."""

    def __init__(self, n):
        self.pool = PromptPool([PoolItem(i, f"q{i}", str(i)) for i in range(n)], "file")

    def __getattr__(self, name):
        return getattr(self.pool, name)

    def __len__(self):
        return len(self.pool)


@pytest.mark.parametrize("row", [
    '{"id": 0, "successes": 1e308, "trials": 1e308}',
    '{"id": 0, "successes": 5, "trials": 1e12}',
    '{"id": 0, "successes": 1e999, "trials": 3}',
    '{"id": 0, "successes": 1, "trials": 1' + "0" * 400 + '}',
    '{"id": 0, "rate": 1' + "0" * 400 + '}',
])
def test_priors_need_finite_bounded_counts(tmp_path, row):
    path = tmp_path / "prior.jsonl"
    path.write_text(row + "\n")
    with pytest.raises(DataError, match="prior.jsonl: row 1"):
        build_prior(str(path), Pool(2), 3.0)


def test_a_saved_prior_with_infinite_or_nan_counts_is_refused(tmp_path):
    for a in (np.array([np.inf, 1.0]), np.array([np.nan, 1.0]), np.array([0.0, 1.0])):
        path = tmp_path / "selector.npz"
        np.savez(path, ids=np.array([0, 1]), a=a, b=np.ones(2))
        with pytest.raises(DataError, match="selector.npz: 'a' of id at position 0"):
            build_prior(str(path), Pool(2), 3.0)
    with pytest.raises(ValueError, match="prior_weight"):
        RunConfig(prior_weight=1e308)


def test_a_huge_reference_answer_is_refused_naming_the_row(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"id": 0, "prompt": "q", "answer": "1"},
            {"id": 1, "prompt": "q2", "answer": "9" * (MAX_REFERENCE_CHARS + 1)}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl: row 2: column 'answer' has 10001 characters"):
        load_file_pool(path)


def test_a_hash_dependent_task_builds_the_same_pool_in_every_process(tmp_path):
    """polynomial_multiplication's items depended on PYTHONHASHSEED: a resume of such a run was refused."""
    import os
    import subprocess
    import sys

    code = ("from rollwise.data.pool import reasoning_gym_pools\n"
            "train, held_out = reasoning_gym_pools('polynomial_multiplication', {}, 30, 10, 7)\n"
            "print(train.content_hash(), held_out.content_hash())\n")
    root = str(REPO)
    hashes = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                             env={**os.environ, "PYTHONPATH": root, "PYTHONHASHSEED": seed}).stdout
              for seed in ("1", "2")}
    assert len(hashes) == 1, hashes


def test_a_task_that_cannot_be_rebuilt_is_refused():
    from rollwise.data.pool import reasoning_gym_pools

    with pytest.raises(DataError, match="'codeio' generates different items each time"):
        reasoning_gym_pools("codeio", {}, 5, 5, 1)
