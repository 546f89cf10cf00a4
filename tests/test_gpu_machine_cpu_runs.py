"""On a machine with a GPU, work meant for the CPU must not touch the GPU.

Found on an H200: building a backbone saved and restored every CUDA device's RNG state,
which starts a CUDA context in a process that asked for the CPU. A process that forks
afterwards (the kill-and-resume harness; DataLoader workers with fork) then cannot use
CUDA in its children, and each CPU job holds GPU memory. These tests stand in a fake GPU
that fails the moment anything reads CUDA state.
"""

from __future__ import annotations

import pytest
import torch

from clipadapt.backbone import create_backbone
from clipadapt.methods import build_method
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec


@pytest.fixture()
def fake_gpu(monkeypatch):
    """torch reports one CUDA device; reading its state raises."""
    def touched(*_args, **_kwargs):
        raise AssertionError("CUDA state was read by work meant for the CPU")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state", touched)
    monkeypatch.setattr(torch.cuda, "set_rng_state", touched)


def test_building_a_backbone_leaves_the_gpu_alone(fake_gpu):
    backbone = create_backbone("clipadapt-micro", None)
    assert next(backbone.parameters()).device.type == "cpu"


def test_random_weights_are_still_the_same_every_time(fake_gpu):
    first, second = (create_backbone("clipadapt-micro", None) for _ in range(2))
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_building_promptpar_leaves_the_gpu_alone(fake_gpu):
    task = TaskSpec(tuple(Attribute(f"attribute {i}", BINARY_CLASSES, template=f"A pedestrian with attribute {i}")
                          for i in range(3)), multilabel=True)
    method = build_method("promptpar", create_backbone("clipadapt-micro", None), task,
                          {"fusion_width": 32, "fusion_heads": 2})
    assert method.num_trainable() > 0
