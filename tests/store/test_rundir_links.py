"""Symlinks in a run directory never make rollwise write outside it.

Each test plants links in a run directory it made, pointing at files in its own tmp dir ("outside"),
and checks the refusal names the entry and that nothing outside was created, changed or emptied.
"""

import os

import pytest

from rollwise.store import checkpoint as ckpt
from rollwise.store import safefiles
from rollwise.config import RunConfig
from rollwise.data.pool import PoolItem, PromptPool
from rollwise.store.rundir import open_run_dir
from rollwise.select.mopps import MoPPSSelector
from rollwise.select.priors import save_posteriors
from rollwise.track import MetricsLog

SECRET = b"the user's own file\n"


@pytest.fixture
def dirs(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    (outside / "target").write_bytes(SECRET)
    return run, outside


def untouched(outside) -> bool:
    return sorted(os.listdir(outside)) == ["target"] and (outside / "target").read_bytes() == SECRET


def test_a_config_yaml_link_is_refused(dirs):
    run, outside = dirs
    (run / "config.yaml").symlink_to(outside / "target")
    with pytest.raises(safefiles.UnsafeEntryError, match="config.yaml is a symbolic link"):
        open_run_dir(run, resume=False, overwrite=False)
    with pytest.raises(safefiles.UnsafeEntryError, match="config.yaml"):
        RunConfig().save(run / "config.yaml")
    assert untouched(outside)


def test_a_dangling_metrics_link_creates_nothing(dirs):
    run, outside = dirs
    (run / "metrics.jsonl").symlink_to(outside / "created-by-rollwise")
    with pytest.raises(safefiles.UnsafeEntryError, match="metrics.jsonl"):
        open_run_dir(run, resume=False, overwrite=False)
    log = MetricsLog(run / "metrics.jsonl", report_to="none")
    with pytest.raises(safefiles.UnsafeEntryError, match="metrics.jsonl"):
        log.write({"step": 0})
    assert untouched(outside)


def test_resume_never_truncates_through_a_link(dirs):
    """The metrics cut of --resume used to follow a link and empty its target (no pickle needed)."""
    run, outside = dirs
    ckpt.save_checkpoint(run, 1, {"step": 1, "metrics_offset": 0})
    (run / "metrics.jsonl").symlink_to(outside / "target")
    with pytest.raises(safefiles.UnsafeEntryError, match="metrics.jsonl is a symbolic link"):
        open_run_dir(run, resume=True, overwrite=False)
    with pytest.raises(safefiles.UnsafeEntryError):
        MetricsLog(run / "metrics.jsonl", report_to="none").truncate_to(0)
    assert untouched(outside)


def test_a_hard_link_is_not_appended_to_or_truncated(dirs):
    run, outside = dirs
    os.link(outside / "target", run / "metrics.jsonl")
    log = MetricsLog(run / "metrics.jsonl", report_to="none")
    for action in (lambda: log.write({"step": 1}), lambda: log.truncate_to(0)):
        with pytest.raises(safefiles.UnsafeEntryError, match="hard link"):
            action()
    assert (outside / "target").read_bytes() == SECRET


def test_checkpoints_run_json_and_selector_never_follow_links(dirs):
    run, outside = dirs
    (run / "checkpoints").symlink_to(outside, target_is_directory=True)
    with pytest.raises(safefiles.UnsafeEntryError, match="checkpoints is a symbolic link"):
        ckpt.save_checkpoint(run, 1, {"step": 1})
    (run / "checkpoints").unlink()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step-000001.safetensors.tmp").symlink_to(outside / "target")  # a planted temp file
    ckpt.save_checkpoint(run, 1, {"step": 1})
    assert ckpt.load_latest_checkpoint(run)["step"] == 1
    for name in ("run.json", "summary.json"):
        (run / name).symlink_to(outside / "target")
        with pytest.raises(safefiles.UnsafeEntryError, match=name):
            ckpt.atomic_json({"x": 1}, run / name)
    (run / "selector.npz").symlink_to(outside / "target")
    pool = PromptPool([PoolItem(0, "q", "a")], "file")
    with pytest.raises(safefiles.UnsafeEntryError, match="selector.npz"):
        save_posteriors(MoPPSSelector(1), pool, run / "selector.npz")
    assert untouched(outside)


def test_a_linked_checkpoint_is_not_read(dirs):
    run, outside = dirs
    ckpt.save_checkpoint(run, 1, {"step": 1})
    ckpt.save_checkpoint(outside, 2, {"step": 2, "planted": True})
    os.symlink(outside / "checkpoints" / "step-000002.safetensors", run / "checkpoints" / "step-000002.safetensors")
    assert ckpt.load_latest_checkpoint(run) == {"step": 1}  # the link is reported and skipped


def test_the_model_export_refuses_a_linked_directory(dirs):
    from rollwise.policy.export import save_policy

    run, outside = dirs
    (run / "model").symlink_to(outside, target_is_directory=True)
    with pytest.raises(safefiles.UnsafeEntryError, match="model is a symbolic link"):
        save_policy(None, run / "model")
    with pytest.raises(safefiles.UnsafeEntryError, match="model"):
        open_run_dir(run, resume=False, overwrite=False)
    assert untouched(outside)


def test_a_directory_where_a_file_belongs_is_named(dirs):
    run, _ = dirs
    (run / "summary.json").mkdir()
    with pytest.raises(safefiles.UnsafeEntryError, match="summary.json is not a regular file"):
        open_run_dir(run, resume=False, overwrite=False)
