"""Prompt features: groups from metadata, length cells, hashed n-grams, saving and rebuilding them."""

import numpy as np
import pytest

from rollwise.data.pool import PoolItem, PromptPool
from rollwise.predict.features import PromptFeatures, build_features, default_group_keys, hashed_ngrams, length_cells
from rollwise.predict.run_features import load_run_features


def gym_like_pool():
    items = [PoolItem(id=i, prompt=f"Calculate {' + '.join(['12'] * t)}.", answer="0",
                      metadata={"num_terms": t, "num_digits": 2, "difficulty": {"num_terms": [2, 4], "num_digits": [2, 2]}})
             for i, t in enumerate([2, 3, 4, 2, 3, 4, 2])]
    return PromptPool(items, "basic_arithmetic")


def test_default_groups_are_the_tasks_difficulty_fields():
    pool = gym_like_pool()
    assert default_group_keys(pool) == ("num_digits", "num_terms")
    f = build_features(pool)
    assert f.num_groups == 3 and f.group.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert f.group_names[0] == "basic_arithmetic|num_digits=2,num_terms=2"
    assert f.length.tolist()[:2] == [len("Calculate 12 + 12."), len("Calculate 12 + 12 + 12.")]


def test_file_pool_groups_by_named_columns_or_one_group():
    items = [PoolItem(id=i, prompt="x" * (i + 1), answer="1", metadata={"level": i % 2}) for i in range(4)]
    pool = PromptPool(items, "file")
    assert build_features(pool).num_groups == 1
    assert build_features(pool, ("level",)).group.tolist() == [0, 1, 0, 1]
    assert build_features(pool, ("missing",)).num_groups == 1  # absent everywhere: one value, None


def test_length_cells_bucket_within_groups():
    cells = length_cells(np.array([0, 0, 0, 0, 1]), np.array([10.0, 10.0, 30.0, 20.0, 5.0]), buckets=2)
    assert cells[0] == cells[1] and cells[2] != cells[0] and cells[4] not in cells[:4]


def test_hashed_ngrams_csr_shape_and_determinism():
    indptr, idx = hashed_ngrams(["abcab", "", "ab"], n=2, buckets=64)
    assert indptr.tolist() == [0, 4, 4, 5]
    assert idx[0] == idx[3] == idx[4]  # "ab" three times, same bucket
    assert np.array_equal(hashed_ngrams(["abcab"], 2, 64)[1], idx[:4])


def test_save_load_round_trip_and_damaged_file(tmp_path):
    f = build_features(gym_like_pool(), ngram_buckets=128)
    f.save(tmp_path / "features.npz")
    g = PromptFeatures.load(tmp_path / "features.npz")
    assert np.array_equal(g.group, f.group) and np.array_equal(g.cell, f.cell)
    assert g.keys == f.keys and g.pool_hash == f.pool_hash and g.ngram_buckets == 128
    assert np.array_equal(g.ngram_indices, f.ngram_indices)
    assert load_run_features(tmp_path).pool_hash == f.pool_hash
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        PromptFeatures.load(tmp_path / "bad.npz")


def test_rebuilt_from_a_run_config_and_checked_against_its_pool_hash(tmp_path):
    import json

    from rollwise.config import RunConfig
    from rollwise.data.pool import build_pools

    cfg = RunConfig(train_size=40, eval_size=10, batch_prompts=8)
    cfg.save(tmp_path / "config.yaml")
    pool, _ = build_pools(cfg)
    (tmp_path / "run.json").write_text(json.dumps({"identity": {"training pool": pool.content_hash()}}))
    f = load_run_features(tmp_path)
    assert len(f) == 40 and f.keys == ("num_digits", "num_terms") and f.num_groups == 2
    (tmp_path / "run.json").write_text(json.dumps({"identity": {"training pool": "0" * 64}}))
    with pytest.raises(ValueError, match="differs"):
        load_run_features(tmp_path)
