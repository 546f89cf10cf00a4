"""`open_backbone`: the one call that opens a backbone with its preprocessing, giving what
`create_backbone` followed by `apply_preprocessing` gave."""

from __future__ import annotations

import pytest
import torch

from clipadapt.backbone import apply_preprocessing, create_backbone, open_backbone
from clipadapt.config import BackboneConfig

SETTINGS = {"preprocess": "letterbox", "normalise": "half", "interpolation": "bilinear"}


def prepared(backbone) -> tuple:
    return backbone.preprocess, backbone.normalise, backbone.interpolation, backbone.weights_id


@pytest.mark.parametrize("cfg", [{"name": "clipadapt-micro", "pretrained": None, **SETTINGS},
                                 BackboneConfig(name="clipadapt-micro", pretrained=None, **SETTINGS),
                                 {"name": "clipadapt-micro", "pretrained": None}])
def test_open_backbone_matches_create_then_apply(cfg):
    expected = apply_preprocessing(create_backbone("clipadapt-micro", None), cfg)
    opened = open_backbone(cfg)
    assert prepared(opened) == prepared(expected)
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(opened.forward_features(images, None).embedding, expected.forward_features(images, None).embedding)


def test_open_backbone_by_name_takes_the_preprocessing_keywords():
    by_name = open_backbone("clipadapt-micro", None, **SETTINGS)
    assert prepared(by_name) == prepared(open_backbone({"name": "clipadapt-micro", "pretrained": None, **SETTINGS}))
    assert by_name.tokenize(["a photo of a road"]).shape[0] == 1  # the tokenizer is the model's own, ready
    with pytest.raises(TypeError, match="unknown preprocessing keyword"):
        open_backbone("clipadapt-micro", None, preproces="crop")
    with pytest.raises(TypeError, match="the config holds"):
        open_backbone({"name": "clipadapt-micro"}, preprocess="crop")
