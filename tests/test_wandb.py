"""`--report-to wandb`: the metrics of metrics.jsonl reach Weights & Biases (offline mode, read back from disk)."""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import pytest

from rollwise.config import RunConfig
from rollwise.track import MetricsLog, numeric_items, read_metrics
from tests.support.models import hf_config

wandb = pytest.importorskip("wandb")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-default"))  # anything W&B writes elsewhere stays here
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def wandb_records(path: Path):
    """The protobuf records of an offline run file (LevelDB-style log: 32 KiB blocks, 7-byte chunk headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk  # FULL / FIRST start a record, MIDDLE / LAST extend it
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def finished_records(path: Path, wait: float = 20.0) -> list:
    """A run file's records once W&B's writer (a separate process) has written its closing `exit` record."""
    deadline = time.monotonic() + wait
    while True:
        try:
            records = list(wandb_records(path))
        except Exception:  # noqa: BLE001 - a record still being written; read again
            if time.monotonic() > deadline:
                raise
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def offline_history(out_dir: Path) -> tuple[dict[int, dict], dict, list[str]]:
    """Logged values by step (W&B's own keys dropped), the run config, and the run ids of every offline run."""
    history, config, ids = {}, {}, []
    for path in sorted(out_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for record in finished_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                items = {(i.key or ".".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
                history.setdefault(record.history.step.num, {}).update(
                    {k: v for k, v in items.items() if not k.startswith("_")})
            elif kind == "run":
                ids.append(record.run.run_id)
                config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
    return history, config, ids


def test_metrics_rows_reach_wandb_with_their_steps_and_a_resumed_log_keeps_the_run(tmp_path):
    rows = [{"step": 0, "eval_greedy_acc": 0.25}, {"step": 1, "loss": 0.5, "acc_mean": 0.125, "ds_capped": False,
                                                   "pred_spearman": None, "note": "x"},
            {"step": 2, "loss": 0.25, "acc_mean": 0.5}]
    log = MetricsLog(tmp_path / "metrics.jsonl", tmp_path / "tb", report_to="wandb", run_config={"run": {"seed": 3}})
    for row in rows:
        log.write(row)
    log.close()
    history, config, ids = offline_history(tmp_path)
    assert history == {r["step"]: numeric_items(r) for r in rows}
    assert config["run"] == {"seed": 3} and not (tmp_path / "tb").exists()
    # A resumed run (same out_dir) continues the same W&B run id. W&B names offline run directories
    # by the second, so a resume within the same second would reuse the first one's directory.
    time.sleep(1.1)
    again = MetricsLog(tmp_path / "metrics.jsonl", report_to="wandb")
    again.write({"step": 3, "loss": 0.125})
    again.close()
    history, _, ids_after = offline_history(tmp_path)
    assert history[3] == {"loss": 0.125} and set(ids_after) == set(ids) and len(ids) == 1


def test_report_to_is_validated_and_a_missing_wandb_says_what_to_install(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="report_to"):
        RunConfig(report_to="mlflow")
    with pytest.raises(ValueError, match="report_to"):
        MetricsLog(tmp_path / "m.jsonl", report_to="mlflow")
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(RuntimeError, match=r"rollwise\[wandb\]"):
        MetricsLog(tmp_path / "m.jsonl", report_to="wandb")


@pytest.mark.slow
def test_train_with_report_to_wandb_logs_what_metrics_jsonl_holds(tmp_path, hf_model_dir):
    """`rollwise train --report-to wandb` on a tiny Hugging Face model: every numeric value of every row."""
    from rollwise.train import train

    cfg = hf_config(tmp_path, hf_model_dir, report_to="wandb")
    train(cfg)
    out = Path(cfg.out_dir)
    rows = read_metrics(out / "metrics.jsonl")
    history, config, _ = offline_history(out)
    assert sorted(history) == sorted({r["step"] for r in rows}) == [0, 1, 2]
    for row in rows:
        expected = numeric_items(row)
        assert {k: history[row["step"]][k] for k in expected} == pytest.approx(expected)
    config.pop("_wandb", None)
    assert config == cfg.to_sections() and config["run"]["report_to"] == "wandb"


def test_report_to_takes_several_backends(tmp_path):
    from rollwise.track import report_backends

    assert report_backends("tensorboard,wandb") == ["tensorboard", "wandb"] and report_backends("none") == []
    assert RunConfig(report_to="wandb, tensorboard").report_to == "wandb, tensorboard"
    for bad in ("tensorboard,none", "", "tensorboard,mlflow"):
        with pytest.raises(ValueError, match="comma-separated"):
            RunConfig(report_to=bad)
    pytest.importorskip("tensorboard")
    log = MetricsLog(tmp_path / "metrics.jsonl", tmp_path / "tb", report_to="tensorboard,wandb")
    log.write({"step": 0, "loss": 0.5})
    log.close()
    history, _, _ = offline_history(tmp_path)
    assert history == {0: {"loss": 0.5}} and any((tmp_path / "tb").iterdir())  # both backends got the row
