"""Prompt pools: reasoning-gym generation, user files, and the errors for bad data."""

import json

import pytest

from rollwise.pool import DataError, PromptPool, PoolItem, load_file_pool, reasoning_gym_pools

TASK_OPTIONS = {
    "basic_arithmetic": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2, "operators": ["+"],
                         "allow_parentheses": False, "allow_negation": False},
    "chain_sum": {},
    "countdown": {},
    "knights_knaves": {},
}


@pytest.mark.parametrize("task", sorted(TASK_OPTIONS))
def test_reasoning_gym_pools_split_without_overlap(task):
    train, held_out = reasoning_gym_pools(task, TASK_OPTIONS[task], 30, 10, seed=3)
    assert len(train) == 30 and len(held_out) == 10
    assert not {it.prompt for it in train} & {it.prompt for it in held_out}
    assert train.ids.tolist() == list(range(30))
    json.dumps([it.entry for it in train])  # JSON-safe for workers and logs
    again, _ = reasoning_gym_pools(task, TASK_OPTIONS[task], 30, 10, seed=3)
    assert [it.prompt for it in again] == [it.prompt for it in train]  # deterministic in the seed


def test_reasoning_gym_pool_too_small_task_space_is_a_clear_error():
    opts = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"],
            "allow_parentheses": False, "allow_negation": False}
    with pytest.raises(DataError, match="distinct questions"):
        reasoning_gym_pools("basic_arithmetic", opts, 200, 50, seed=0)


def test_unknown_task_is_a_clear_error():
    with pytest.raises(DataError, match="no_such_task"):
        reasoning_gym_pools("no_such_task", {}, 10, 10, seed=0)


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_pool_loads_ids_and_metadata(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": 5, "prompt": "1+1?", "answer": 2, "level": 3},
                                              {"id": 9, "prompt": "2+2?", "answer": "4"}])
    pool = load_file_pool(path)
    assert pool.ids.tolist() == [5, 9]
    assert pool[0].answer == "2" and pool[0].metadata == {"level": 3}
    assert pool.index_of(9) == 1
    with pytest.raises(KeyError, match="prompt id 4"):
        pool.index_of(4)


@pytest.mark.parametrize("rows, message", [
    ([{"id": 1, "prompt": "a", "answer": "1"}, {"id": 1, "prompt": "b", "answer": "2"}], "prompt id 1 appears twice"),
    ([{"prompt": "a", "answer": "1"}], "row 1: missing column 'id'"),
    ([{"id": 0, "prompt": "a", "answer": "1"}, {"id": 1, "prompt": "b"}], "row 2: missing column 'answer'"),
    ([{"id": 0, "prompt": "  ", "answer": "1"}], "row 1: column 'prompt' is empty"),
    ([{"id": 0, "prompt": "a", "answer": ""}], "row 1: column 'answer' is empty"),
    ([{"id": "x", "prompt": "a", "answer": "1"}], "row 1: column 'id' must be a non-negative integer"),
    ([{"id": 0, "prompt": 7, "answer": "1"}], "row 1: column 'prompt' must be a string"),
    ([{"id": 0, "prompt": "a", "answer": [1]}], "row 1: column 'answer' must be a string or number"),
    ([{"id": 0, "prompt": "a", "answer": "1"}, '{"id": 1, "prompt": "b", "ans'], "row 2: not valid JSON"),
    (["[1, 2]"], "row 1: expected a JSON object"),
])
def test_jsonl_bad_rows_name_file_row_and_column(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message) as err:
        load_file_pool(path)
    assert "bad.jsonl" in str(err.value)


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_file_pool(tmp_path / "missing.jsonl")
    (tmp_path / "x.csv").write_text("id,prompt\n")
    with pytest.raises(DataError, match="unknown format"):
        load_file_pool(tmp_path / "x.csv")
    (tmp_path / "b.jsonl").write_bytes(b'{"id": 0, "prompt": "\xff", "answer": "1"}\n')
    with pytest.raises(DataError, match="not valid UTF-8"):
        load_file_pool(tmp_path / "b.jsonl")
    (tmp_path / "t.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(DataError, match="unreadable Parquet"):
        load_file_pool(tmp_path / "t.parquet")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        load_file_pool(tmp_path / "empty.jsonl")


def test_parquet_and_datasets_dir(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = {"id": [0, 1], "prompt": ["p0", "p1"], "answer": ["a0", "a1"]}
    pq.write_table(pa.table(rows), tmp_path / "d.parquet")
    assert load_file_pool(tmp_path / "d.parquet").ids.tolist() == [0, 1]
    pq.write_table(pa.table({"id": [0, 0], "prompt": ["p", "q"], "answer": ["a", "b"]}), tmp_path / "dup.parquet")
    with pytest.raises(DataError, match="appears twice"):
        load_file_pool(tmp_path / "dup.parquet")
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    assert [it.prompt for it in load_file_pool(tmp_path / "ds")] == ["p0", "p1"]
    with pytest.raises(DataError, match="not a directory saved by datasets"):
        (tmp_path / "nods").mkdir()
        load_file_pool(tmp_path / "nods")


def test_pool_rejects_duplicate_ids_built_in_code():
    with pytest.raises(DataError, match="appears twice"):
        PromptPool([PoolItem(3, "a", "1"), PoolItem(3, "b", "2")], "file")
