"""The tiny policies shipped with the package: exact bytes, used for the built-in presets without a warm-up,
a warm-up for any other settings, a damaged install refused, rebuilt by a documented command."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rollwise.policy import models, ship, shipped, warmup
from rollwise.config import RunConfig

# The weights every built-in run starts from. Changing them changes every figure measured from the
# default and scratchpad presets: rebuild on purpose (python -m rollwise.policy.ship rebuild), then update here.
EXPECTED_SHA256 = {
    "sums": "0328098649455325d0237aafd37bdc8293299c8a12f299d1847f7cb641d461c1",
    "scratchpad": "667342c579c992f791474027b2673997dd17cf311e99f11730d7a139eea6617f",
}


def test_shipped_weights_have_the_recorded_hashes():
    entries = shipped.manifest()["policies"]
    assert sorted(entries) == sorted(EXPECTED_SHA256)
    for name, entry in entries.items():
        assert entry["sha256"] == EXPECTED_SHA256[name]
        assert shipped.sha256(shipped.SHIPPED_DIR / name / shipped.WEIGHTS) == EXPECTED_SHA256[name]
        assert all((shipped.SHIPPED_DIR / name / f).is_file() for f in shipped.FILES)


@pytest.mark.parametrize("preset, name", [(None, "sums"), ("sums", "sums"), ("scratchpad", "scratchpad"),
                                          ("scratchpad+mopps-gvm-rpo", "scratchpad"), ("dapo", "scratchpad")])
def test_built_in_presets_match_a_shipped_policy(preset, name):
    cfg = RunConfig.from_sources(preset=preset)
    entry = shipped.manifest()["policies"][name]
    assert models.tiny_cache_key(cfg) == entry["cache_key"]
    assert {k: getattr(cfg, k) for k in models.TINY_KEYS} == entry["settings"]


@pytest.fixture()
def no_warmup(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the warm-up ran")

    monkeypatch.setattr(warmup, "warm_up", refuse)
    monkeypatch.setattr(models, "_build_tiny", refuse)


@pytest.mark.parametrize("preset", [None, "scratchpad"])
def test_default_runs_start_from_the_shipped_weights_without_a_warm_up(tmp_path, no_warmup, preset):
    from safetensors.torch import load_file

    cfg = RunConfig.from_sources(preset=preset, overrides={"cache_dir": str(tmp_path / "cache")})
    name = "scratchpad" if preset else "sums"
    assert models.resolve_model_path(cfg, log=lambda m: None) == shipped.SHIPPED_DIR / name
    policy = models.load_policy(cfg, log=lambda m: None)
    weights = load_file(shipped.SHIPPED_DIR / name / shipped.WEIGHTS)
    for key, value in policy.model.state_dict().items():
        if key in weights:
            torch.testing.assert_close(value, weights[key], rtol=0, atol=0)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())  # nothing cached


def test_other_settings_warm_up_and_cache_as_before(tmp_path, monkeypatch):
    built = []

    def fake_build(cfg, directory, log):
        directory.mkdir(parents=True)
        (directory / "rollwise.json").write_text("{}")
        built.append(cfg.warmup_steps)

    monkeypatch.setattr(models, "_build_tiny", fake_build)
    cfg = RunConfig(cache_dir=str(tmp_path), warmup_steps=1999)
    path = models.ensure_tiny(cfg, log=lambda m: None)
    assert built == [1999] and path.parent == tmp_path
    # the default's settings, asked to build anyway (the rebuild command does), warm up too
    models.ensure_tiny(RunConfig(cache_dir=str(tmp_path)), log=lambda m: None, use_shipped=False)
    assert built == [1999, 2000]


def test_damaged_shipped_weights_are_refused(tmp_path):
    root = tmp_path / "weights"
    shutil.copytree(shipped.SHIPPED_DIR, root)
    data = bytearray((root / "sums" / shipped.WEIGHTS).read_bytes())
    data[-1] ^= 1
    (root / "sums" / shipped.WEIGHTS).write_bytes(bytes(data))
    key = shipped.manifest(root)["policies"]["sums"]["cache_key"]
    with pytest.raises(shipped.ShippedWeightsError, match="sha256"):
        shipped.find(key, root)
    (root / "scratchpad" / "config.json").unlink()
    with pytest.raises(shipped.ShippedWeightsError, match="config.json missing"):
        shipped.find(shipped.manifest(root)["policies"]["scratchpad"]["cache_key"], root)
    assert shipped.find("0" * 16, root) is None


def test_rebuild_from_a_cache_writes_the_files_and_manifest(tmp_path, no_warmup):
    cfg = RunConfig()
    cache = tmp_path / "cache"
    shutil.copytree(shipped.SHIPPED_DIR / "sums", cache / f"tiny-{models.tiny_cache_key(cfg)}")
    data = ship.rebuild(["sums"], root=tmp_path / "out", from_cache=cache, log=lambda m: None)
    entry = data["policies"]["sums"]
    assert entry["sha256"] == EXPECTED_SHA256["sums"] and entry["cache_key"] == models.tiny_cache_key(cfg)
    assert json.loads((tmp_path / "out" / shipped.MANIFEST).read_text()) == data
    assert ship.main(["check"]) == 0


def test_a_checkpoint_names_the_tiny_model_by_its_settings_not_its_path():
    from rollwise.store.rundir import RunDirError, check_same_run

    cfg = RunConfig()
    key = f"tiny-{models.tiny_cache_key(cfg)}"
    assert models.model_identity(cfg, str(shipped.SHIPPED_DIR / "sums")) == key
    # a checkpoint written before (the cache path) still resumes with the shipped copy
    check_same_run({"identity": {"model": f"/root/.cache/rollwise/{key}"}}, {}, {"model": key})
    with pytest.raises(RunDirError, match="model differs"):
        check_same_run({"identity": {"model": "/elsewhere/tiny-0000"}}, {}, {"model": key})


def test_the_default_benchmark_records_the_shipped_starting_policy():
    from bench.claims.default_learning import starting_policy

    policy = starting_policy(models.prepare_policy(RunConfig(), log=lambda m: None))
    assert policy["shipped"] and policy["sha256"] == EXPECTED_SHA256["sums"] and policy["warmup_seconds"] == 0.0
    assert policy["warmup_best_step"] == shipped.manifest()["policies"]["sums"]["warmup"]["best_step"]
