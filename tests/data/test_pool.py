"""Prompt pools: reasoning-gym generation, user files, and the errors for bad data."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

import rollwise.data.jsonl
from rollwise.data.pool import DataError, PromptPool, PoolItem, item_hash, load_file_pool, reasoning_gym_pools

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
    ([{"id": 0, "prompt": "a", "answer": [1]}], "row 1: column 'answer' must be a string or finite number"),
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
    import pyarrow as pa  # a dependency of rollwise: never skipped
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


# ---------------------------------------------------------------------------- strict JSON and values


def row(**fields):
    return {"id": 0, "prompt": "p", "answer": "a", **fields}


@pytest.mark.parametrize("line, message", [
    ('{"id": 0, "prompt": "p", "answer": NaN}', "row 1: column 'answer': 'NaN' is not a JSON number"),
    ('{"id": 0, "prompt": "p", "answer": Infinity}', "row 1: column 'answer': 'Infinity' is not a JSON number"),
    ('{"id": 0, "prompt": "p", "answer": -Infinity}', "row 1: column 'answer': '-Infinity' is not a JSON number"),
    ('{"id": 0, "prompt": "p", "answer": 1e400}', "row 1: column 'answer': '1e400' is not a JSON number"),
    ('{"id": 0, "prompt": "p", "answer": "a", "w": [1, NaN]}', "row 1: column 'w': 'NaN' is not a JSON number"),
    ('{"id": 0, "prompt": "p", "answer": %s}' % ("7" * 5000),
     "row 1: column 'answer': an integer with more than 4300 digits"),
    ('{"id": %s, "prompt": "p", "answer": "a"}' % ("1" * 4301), "row 1: column 'id': an integer with more than 4300 digits"),
    ('{"id": 0, "prompt": "p", "answer": "a", "deep": %s}' % ("[" * 100_000), "row 1: nested too deeply"),
    ('{"id": 0, "prompt": "p", "answer": "a", "deep": %s}' % ("[" * 100 + "]" * 100), "row 1: column 'deep': nested deeper than 64"),
    ('{"id": 0, "prompt": "\\ud800x", "answer": "a"}', "row 1: column 'prompt': lone surrogate"),
])
def test_json_that_python_reads_but_data_must_not_hold(tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [line])
    with pytest.raises(DataError, match=message):
        load_file_pool(path)


@pytest.mark.parametrize("pid, message", [
    (2**63, "below 2\\*\\*63"), (2**64 + 5, "below 2\\*\\*63"), (-1, ", got -1"),
    (True, "got True"), (1.5, "got 1.5"), ("7", "got '7'"), ([1], "got \\[1\\]"),
])
def test_ids_must_fit_int64_and_be_integers(tmp_path, pid, message):
    path = write_jsonl(tmp_path / "ids.jsonl", [row(id=0), row(id=pid, prompt="q")])
    with pytest.raises(DataError, match="ids.jsonl: row 2: column 'id' must be a non-negative integer.*" + message):
        load_file_pool(path)


def test_edge_ids_and_integral_floats_are_accepted(tmp_path):
    path = write_jsonl(tmp_path / "ids.jsonl", [row(id=2**63 - 1), row(id=3.0, prompt="q"), row(id=0, prompt="r")])
    pool = load_file_pool(path)
    assert pool.ids.tolist() == [2**63 - 1, 3, 0] and pool.ids.dtype == np.int64
    assert isinstance(pool[1].id, int)


def test_rows_split_at_newlines_only_and_bom_is_skipped(tmp_path):
    prompts = ["line\u2028sep", "para\u2029sep", "next\x85line", "vertical\x0btab"]
    lines = [json.dumps(row(id=i, prompt=p), ensure_ascii=False) for i, p in enumerate(prompts)]
    path = tmp_path / "u.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8"))  # BOM, CRLF, no final newline
    pool = load_file_pool(path)
    assert [it.prompt for it in pool] == prompts and pool.ids.tolist() == [0, 1, 2, 3]
    path.write_bytes(b"\n\xef\xbb\xbf" + lines[0].encode())  # a BOM elsewhere is not skipped
    with pytest.raises(DataError, match="row 2: not valid JSON"):
        load_file_pool(path)


def test_a_very_long_line_is_a_bounded_error(tmp_path, monkeypatch):
    monkeypatch.setattr(rollwise.data.jsonl, "MAX_LINE_BYTES", 100)
    path = write_jsonl(tmp_path / "long.jsonl", [row(), row(id=1, prompt="x" * 200)])
    with pytest.raises(DataError, match="long.jsonl: row 2: longer than 100 bytes"):
        load_file_pool(path)
    write_jsonl(path, [row(), row(id=1, prompt="x" * 60)])
    assert len(load_file_pool(path)) == 2


def test_parquet_and_datasets_get_the_same_value_checks(tmp_path):
    import pyarrow as pa  # a dependency of rollwise: never skipped
    import pyarrow.parquet as pq

    def parquet(name, **columns):
        base = {"id": [0, 1], "prompt": ["p0", "p1"], "answer": ["a0", "a1"]}
        pq.write_table(pa.table({**base, **columns}), tmp_path / name)
        return tmp_path / name

    with pytest.raises(DataError, match="nan.parquet: row 2: column 'answer' must be .* finite number, got nan"):
        load_file_pool(parquet("nan.parquet", answer=[1.5, float("nan")]))
    big = pa.array([0, 2**63], type=pa.uint64())
    with pytest.raises(DataError, match="big.parquet: row 2: column 'id' must be a non-negative integer below 2"):
        load_file_pool(parquet("big.parquet", id=big))
    with pytest.raises(DataError, match="frac.parquet: row 1: column 'id' must be a non-negative integer, got 0.5"):
        load_file_pool(parquet("frac.parquet", id=[0.5, 1.0]))
    assert load_file_pool(parquet("floats.parquet", id=[4.0, 1.0])).ids.tolist() == [4, 1]
    datasets = pytest.importorskip("datasets")
    negative = datasets.Dataset.from_dict({"id": [0, -3], "prompt": ["p", "q"], "answer": ["a", "b"]})
    negative.save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(DataError, match="ds: row 2: column 'id' must be a non-negative integer, got -3"):
        load_file_pool(tmp_path / "ds")


# ---------------------------------------------------------------------------- content hashes


def test_item_hash_is_the_documented_sha256_prefix():
    prompt, answer = "What is 2+2?\u2028", "4"
    data = len(prompt.encode()).to_bytes(8, "little") + prompt.encode() + answer.encode()
    assert item_hash(prompt, answer) == int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
    assert item_hash("ab", "c") != item_hash("a", "bc")
    pool = PromptPool([PoolItem(7, prompt, answer), PoolItem(9, "q", "1")], "file")
    assert pool.item_hashes().dtype == np.uint64
    assert pool.item_hashes().tolist() == [item_hash(prompt, answer), item_hash("q", "1")]
    assert pool.item_hash(1) == item_hash("q", "1")


def test_content_hash_covers_ids_order_prompts_and_answers_only():
    def pool(items, source="a.jsonl"):
        return PromptPool([PoolItem(*it) for it in items], "file", source)

    base = pool([(1, "p", "x", {"m": 1}), (2, "q", "y")])
    digest = base.content_hash()
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert pool([(1, "p", "x"), (2, "q", "y")], "moved/b.jsonl").content_hash() == digest  # metadata, path: no
    for changed in ([(1, "p", "x"), (2, "q", "z")], [(1, "p", "x"), (3, "q", "y")], [(2, "q", "y"), (1, "p", "x")],
                    [(1, "p", "x")], [(1, "p", "x"), (2, "q", "y"), (4, "r", "w")]):
        assert pool(changed).content_hash() != digest, changed


def test_content_hash_is_stable_across_processes(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [row(id=i, prompt=f"q{i}", answer=str(i)) for i in range(50)])
    code = f"from rollwise.data.pool import load_file_pool; print(load_file_pool({str(path)!r}).content_hash())"
    env = {"PYTHONHASHSEED": "123", "PATH": ""}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert other.stdout.strip() == load_file_pool(path).content_hash()


def test_indices_of_many_ids():
    pool = PromptPool([PoolItem(i, f"q{i}", "a") for i in (40, 10, 30)], "file")
    assert pool.indices_of(np.array([30, 99, 40, 10, -1])).tolist() == [2, -1, 0, 1, -1]
    assert PromptPool([], "file").indices_of(np.array([1])).tolist() == [-1]
