"""CLIP-MHAdapter's inference path (fused matmuls and attention, output projection after
the token mean) gives the training path's numbers; training and attention maps keep it."""

from __future__ import annotations

import pytest
import torch

from clipadapt.backbone import create_backbone
from clipadapt.methods import build_method
from clipadapt.methods.mhadapter import MHAdapterHead


@pytest.fixture(scope="module")
def method(two_attribute_task):
    return build_method("mhadapter", create_backbone("clipadapt-tiny", None), two_attribute_task, {}).eval()


def test_inference_path_equals_the_autograd_path(method):
    images = torch.randn(3, 3, method.backbone.image_size, method.backbone.image_size)
    feats = method.backbone.forward_features(images, method.needs().tap_block)
    reference = method(feats)  # autograd on: nn.MultiheadAttention over every token
    with torch.inference_mode():
        fast = method(feats)
    for a, b in zip(reference, fast):
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_training_and_attention_maps_take_the_full_path(method, monkeypatch):
    calls = []
    monkeypatch.setattr(MHAdapterHead, "pooled_inference", lambda self, tokens: calls.append(1))
    tokens = torch.randn(2, method.backbone.num_patches, method.backbone.width)
    head = method.adapters[0]
    with torch.no_grad():
        _, weights = head(tokens, return_attention=True)
        head.train()
        head(tokens)
        head.eval()
        assert calls == []
        head(tokens)
    assert calls == [1] and weights.shape[-2:] == (method.backbone.num_patches,) * 2
