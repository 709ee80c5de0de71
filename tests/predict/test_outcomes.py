"""The outcome log: written by every run, cut back exactly on resume, read strictly."""

from __future__ import annotations

import json

import pytest

from rollwise.predict.outcomes import OutcomeLog, OutcomeLogError, read_header, read_outcomes


def _log(tmp_path, pool=10, held_out=4):
    return OutcomeLog(tmp_path / "outcomes.jsonl", pool_size=pool, eval_size=held_out)


def test_round_trip_and_kinds(tmp_path):
    log = _log(tmp_path)
    log.write(1, "train", [3, 1], [2, 0], [8, 8])
    log.write(1, "eval", [0, 3], [1, 2], [4, 4])
    log.write(2, "partial", [9], [5], [6])
    log.write(2, "train", [], [], [])  # nothing to record: no line
    rows = read_outcomes(log.path)
    assert [(r.step, r.kind) for r in rows] == [(1, "train"), (1, "eval"), (2, "partial")]
    assert rows[0].successes.tolist() == [2, 0] and rows[2].trials.tolist() == [6]
    assert [r.kind for r in read_outcomes(log.path, kinds=("eval",))] == ["eval"]
    assert read_header(log.path)["pool_size"] == 10


def test_truncate_to_offset_is_exact(tmp_path):
    log = _log(tmp_path)
    log.write(1, "train", [1], [1], [8])
    offset = log.offset()
    log.write(2, "train", [2], [3], [8])
    log.truncate_to(offset)
    assert [r.step for r in read_outcomes(log.path)] == [1]
    log.truncate_to(0)  # a new run: the header is written again with its first row
    log.write(3, "probe", [4], [0], [8])
    assert [r.step for r in read_outcomes(log.path)] == [3] and read_header(log.path)["eval_size"] == 4
    with pytest.raises(ValueError, match="truncated or replaced"):
        log.truncate_to(10_000)


def test_unknown_kind_is_refused_on_write(tmp_path):
    with pytest.raises(ValueError, match="outcome kind"):
        _log(tmp_path).write(1, "bogus", [1], [1], [1])


@pytest.mark.parametrize("row, message", [
    ({"step": 1, "kind": "train", "ids": [10], "successes": [1], "trials": [8]}, "index 10 is outside the pool"),
    ({"step": 1, "kind": "eval", "ids": [4], "successes": [1], "trials": [8]}, "outside the held-out set"),
    ({"step": 1, "kind": "train", "ids": [2], "successes": [9], "trials": [8]}, "successes 9 outside"),
    ({"step": 1, "kind": "train", "ids": [2], "successes": [-1], "trials": [8]}, "successes -1 outside"),
    ({"step": 1, "kind": "nope", "ids": [2], "successes": [1], "trials": [8]}, "unknown kind"),
    ({"step": 1, "kind": "train", "ids": [2, 3], "successes": [1], "trials": [8]}, "different lengths"),
    ({"step": 1, "kind": "train", "ids": [2.5], "successes": [1], "trials": [8]}, "list of integers"),
    ({"step": 1, "kind": "train", "ids": [2**70], "successes": [1], "trials": [8]}, "outside int64"),
    ({"step": -1, "kind": "train", "ids": [2], "successes": [1], "trials": [8]}, "step must be"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    log = _log(tmp_path)
    log.write(1, "train", [1], [1], [8])
    with open(log.path, "a") as handle:
        handle.write(json.dumps(row) + "\n")
    with pytest.raises(OutcomeLogError, match=message) as err:
        read_outcomes(log.path)
    assert f"{log.path}:3:" in str(err.value)


def test_truncated_last_line_and_bad_header(tmp_path):
    log = _log(tmp_path)
    log.write(1, "train", [1], [1], [8])
    text = log.path.read_text()
    log.path.write_text(text[:-5])
    with pytest.raises(OutcomeLogError, match=":2: the last line is not terminated"):
        read_outcomes(log.path)
    log.path.write_text('{"format": "other"}\n')
    with pytest.raises(OutcomeLogError, match=":1: not a rollwise-outcomes header"):
        read_outcomes(log.path)


@pytest.mark.slow
def test_a_run_logs_every_group_and_resume_cuts_back(tmp_path):
    """A short run's log holds each step's training groups (B prompts, n trials each), the probe and the
    evaluations (MoPPS: a probe needs a prediction); resuming from a checkpoint rewrites the later rows exactly once."""
    from rollwise.config import RunConfig
    from rollwise.train import train

    common = dict(steps=4, batch_prompts=4, samples_per_prompt=2, train_size=16, eval_size=4, eval_samples=2,
                  eval_every=2, probe_every=2, probe_size=3, progress=False, report_to="none", warmup_steps=0,
                  warmup_target_acc=0.0, checkpoint_every=2, selector="mopps")
    straight = tmp_path / "straight"
    train(RunConfig(out_dir=str(straight), **common))
    rows = read_outcomes(straight / "outcomes.jsonl")
    train_rows = [r for r in rows if r.kind == "train"]
    assert [r.step for r in train_rows] == [1, 2, 3, 4]
    assert all(r.ids.size == 4 and (r.trials == 2).all() for r in train_rows)
    assert [r.step for r in rows if r.kind == "probe"] == [2, 4]
    assert [r.step for r in rows if r.kind == "eval"] == [0, 2, 4]
    resumed = tmp_path / "resumed"
    train(RunConfig(out_dir=str(resumed), **{**common, "steps": 2}))
    train(RunConfig(out_dir=str(resumed), **common), resume=True)
    assert (resumed / "outcomes.jsonl").read_text() == (straight / "outcomes.jsonl").read_text()
