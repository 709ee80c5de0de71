"""Random streams: every generator seeded, checkpointed and restored, CUDA included."""

import numpy as np
import torch

from rollwise import randomness
from rollwise.randomness import RandomStreams, forked_torch_rng


def test_streams_round_trip_through_state_dict():
    streams = RandomStreams(7)
    state = streams.state_dict()
    expected = (streams.train.random(3), streams.probe.random(3), torch.rand(3))
    other = RandomStreams(8)
    other.load_state_dict(state)
    got = (other.train.random(3), other.probe.random(3), torch.rand(3))
    assert np.array_equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
    assert torch.equal(expected[2], got[2])


def test_probe_stream_is_independent_of_the_training_stream():
    a, b = RandomStreams(3), RandomStreams(3)
    b.probe.random(100)  # using the probe never moves the training stream
    assert np.array_equal(a.train.random(5), b.train.random(5))


def test_forked_rng_restores_the_run_stream():
    torch.manual_seed(1)
    with forked_torch_rng(123):
        torch.rand(10)
    after = torch.rand(2)
    torch.manual_seed(1)
    assert torch.equal(after, torch.rand(2))


class FakeCuda:
    """Stands in for two CUDA devices: records what is saved, restored and forked."""

    def __init__(self):
        self.states = [torch.tensor([1], dtype=torch.uint8), torch.tensor([2], dtype=torch.uint8)]
        self.restored = None

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: list(self.states))
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: setattr(self, "restored", states))


def test_cuda_generators_are_checkpointed_and_restored(monkeypatch):
    fake = FakeCuda()
    fake.install(monkeypatch)
    monkeypatch.setattr(torch, "manual_seed", lambda seed: None)  # no real CUDA to seed
    streams = RandomStreams(0)
    state = streams.state_dict()
    assert [int(s[0]) for s in state["cuda"]] == [1, 2]
    streams.load_state_dict(state)
    assert fake.restored is not None and [int(s[0]) for s in fake.restored] == [1, 2]


def test_forked_rng_forks_every_cuda_device(monkeypatch):
    FakeCuda().install(monkeypatch)
    seen = {}

    class Fork:
        def __init__(self, devices):
            seen["devices"] = devices

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch.random, "fork_rng", Fork)
    monkeypatch.setattr(torch, "manual_seed", lambda seed: None)
    with forked_torch_rng(5):
        pass
    assert seen["devices"] == [0, 1] and randomness.cuda_devices() == [0, 1]
