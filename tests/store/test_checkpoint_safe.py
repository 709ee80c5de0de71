"""Checkpoints that cannot carry code: `--resume` used to unpickle before any check.

A pickle payload in a run directory's checkpoints must never run: old-format checkpoints are refused
with a message saying how to convert them, and the converter itself loads them with torch's
restricted loader unless the user says they trust the file.
"""

import os
import random

import numpy as np
import pytest
import torch

from rollwise.store import checkpoint as ckpt
from rollwise.store import safestate
from rollwise.store.convert import convert
from rollwise.store.rundir import open_run_dir


class Payload:
    """Unpickling this creates `path`: what a hostile run directory's checkpoint could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.makedirs, (self.path,)


def plant_pickle(run_dir, canary, step=3):
    directory = ckpt.checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"step": step, "x": Payload(canary)}, directory / f"step-{step:06d}.pt")


def test_a_pickle_checkpoint_is_refused_and_never_loaded(tmp_path):
    run, canary = tmp_path / "run", tmp_path / "CANARY"
    plant_pickle(run, canary)
    with pytest.raises(ckpt.CheckpointError, match="old-format checkpoint.*convert-checkpoint"):
        open_run_dir(run, resume=True, overwrite=False)
    with pytest.raises(ckpt.CheckpointError, match="convert-checkpoint"):
        ckpt.read_checkpoint(ckpt.list_checkpoints(run)[-1][1])
    assert not canary.exists()


def test_the_converter_refuses_a_payload_unless_trusted(tmp_path):
    run, canary = tmp_path / "run", tmp_path / "CANARY"
    plant_pickle(run, canary)
    with pytest.raises(ckpt.CheckpointError, match="--trust-pickle"):
        convert(run, log=lambda _: None)
    assert not canary.exists()


def test_an_honest_old_checkpoint_converts_without_unpickling_code(tmp_path):
    """Old checkpoints hold numpy arrays and random states: torch's restricted loader reads them."""
    run = tmp_path / "run"
    state = {"step": 2, "components": {"selector": {"a": np.arange(3.0), "seen": np.array([True, False])},
                                       "random": {"numpy": np.random.default_rng(1).bit_generator.state}},
             "metrics_offset": 10}
    ckpt.checkpoint_dir(run).mkdir(parents=True)
    torch.save(state, ckpt.checkpoint_dir(run) / "step-000002.pt")
    written = convert(run, log=lambda _: None)
    assert [p.name for p in written] == ["step-000002.safetensors"]
    back = ckpt.load_latest_checkpoint(run)
    assert back["components"]["selector"]["a"].tolist() == [0.0, 1.0, 2.0]
    assert back["components"]["random"]["numpy"] == state["components"]["random"]["numpy"]
    assert (ckpt.checkpoint_dir(run) / "step-000002.pt.converted").is_file()


def test_every_component_state_round_trips_exactly():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.9, 0.99))
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    random.seed(3)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": np.random.default_rng(5).bit_generator.state,
             "arrays": {"u64": np.array([2**64 - 1], dtype=np.uint64), "i64": np.array([-1, 7]), "empty": np.zeros(0)},
             "scalars": [np.float64(0.5), np.int64(-3), float("inf"), float("nan"), None, True, 2**100],
             "evals": {"$not_a_tag": 1, 5: "int key"}}
    back = safestate.decode(safestate.encode(state))
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.99)
    assert set(back["optimizer"]["state"]) == {0, 1} and torch.equal(
        back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert back["python"] == state["python"] and torch.equal(back["torch"], state["torch"])
    assert back["numpy"] == state["numpy"] and back["scheduler"] == state["scheduler"]
    assert back["arrays"]["u64"].dtype == np.uint64 and back["arrays"]["u64"][0] == 2**64 - 1
    assert back["scalars"][:3] == [0.5, -3, float("inf")] and type(back["scalars"][1]) is np.int64
    assert np.isnan(back["scalars"][3]) and back["scalars"][4:] == [None, True, 2**100]
    assert back["evals"] == {"$not_a_tag": 1, 5: "int key"}
    restored = torch.nn.Linear(3, 2)
    restored.load_state_dict(back["model"])
    assert all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), model.state_dict().values()))


def test_objects_that_need_pickle_are_refused_at_save_time(tmp_path):
    with pytest.raises(safestate.StateFormatError, match=r"state.components.x: a Payload cannot be checkpointed"):
        ckpt.save_checkpoint(tmp_path, 1, {"step": 1, "components": {"x": Payload(tmp_path / "never")}})
    with pytest.raises(safestate.StateFormatError, match="dtype object"):
        safestate.encode({"a": np.array([{}], dtype=object)})


def test_a_forged_state_file_is_only_data(tmp_path):
    """Whatever a state file says, decoding builds only containers, numbers, strings and tensors."""
    from safetensors.torch import save

    forged = save({"t0": torch.zeros(1)}, metadata={"format": safestate.FORMAT,
                                                     "state": '{"step": 1, "x": {"$np": "O", "v": 1}}'})
    with pytest.raises(safestate.StateFormatError):
        safestate.decode(forged)
    for bad in (b"", b"\xff" * 16, save({"t0": torch.zeros(1)}), forged[:20]):
        with pytest.raises(safestate.StateFormatError):
            safestate.decode(bad)
