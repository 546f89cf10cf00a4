"""A local weights file keeps the preprocessing of the open_clip tag it is a copy of:
named (`backbone.tag`) or recognised from its path; the card says what was used."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from open_clip.pretrained import _PRETRAINED, _pcfg
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms as T

from clipadapt.backbone import backbone_from_config, create_backbone
from clipadapt.backbone.tags import recognise_tag, tag_preprocessing
from clipadapt.engine.checkpoint import build_card
from clipadapt.engine.sources import make_transform
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import build_method
from clipadapt.task import Attribute, TaskSpec

MICRO = "clipadapt-micro"
HALF = (0.5, 0.5, 0.5)


@pytest.mark.parametrize("path, tag", [
    ("/models/ViT-L-14-laion2b_s32b_b82k.safetensors", "laion2b_s32b_b82k"),
    ("~/.cache/huggingface/hub/models--laion--CLIP-ViT-L-14-laion2B-s32B-b82K/snapshots/1a2b/open_clip_model.safetensors",
     "laion2b_s32b_b82k"),
    ("/models/ViT-L-14.safetensors", None),  # nothing in the name: not guessed
])
def test_a_file_is_recognised_by_its_tag_or_hub_repository(path, tag):
    assert recognise_tag("ViT-L-14", path) == tag


def test_the_field_s_tags_carry_their_preprocessing():
    laion = tag_preprocessing("ViT-L-14", "laion2b_s32b_b82k")
    assert laion["mean"] == HALF and laion["std"] == HALF and laion["quick_gelu"] is False
    dfn = tag_preprocessing("ViT-H-14-quickgelu", "dfn5b")
    assert dfn["resize_mode"] == "squash" and dfn["quick_gelu"] is True
    with pytest.raises(ClipAdaptError, match="not an open_clip weights tag of 'ViT-L-14'"):
        tag_preprocessing("ViT-L-14", "laion9000")


@pytest.fixture
def micro_tags(monkeypatch):
    """Two weights tags for the micro CLIP, shaped like open_clip's own entries."""
    monkeypatch.setitem(_PRETRAINED, MICRO, {
        "halfnorm": _pcfg(mean=HALF, std=HALF),
        "squashed": _pcfg(resize_mode="squash", quick_gelu=True),
    })


def micro_file(folder, name: str):
    """The micro CLIP's random weights as a .safetensors file, or a torch file (.pt) as
    open_clip's own checkpoints are."""
    path = folder / name
    state = {k: v.contiguous() for k, v in create_backbone(MICRO, None).model.state_dict().items()}
    save_file(state, str(path)) if path.suffix == ".safetensors" else torch.save(state, path)
    return path


def one_attribute_card(backbone) -> dict:
    task = TaskSpec((Attribute("weather", ("clear", "foggy")),))
    return build_card(build_method("linear_probe", backbone, task, {}))


def test_a_file_of_a_half_normalised_tag_is_normalised_with_half(tmp_path, micro_tags):
    plain = create_backbone(MICRO, str(micro_file(tmp_path, "weights.safetensors")))
    assert plain.image_mean != HALF and plain.tag is None
    assert "unknown" in plain.describe()["weights_preprocessing"]  # a guess, and the card says so

    named = backbone_from_config({"name": MICRO, "pretrained": str(micro_file(tmp_path, "weights.safetensors")),
                                  "tag": "halfnorm"})
    found = create_backbone(MICRO, str(micro_file(tmp_path, "micro-halfnorm.safetensors")))
    for backbone in (named, found):
        assert backbone.tag == "halfnorm" and backbone.image_mean == HALF and backbone.image_std == HALF
        card = one_attribute_card(backbone)
        assert card["backbone"]["tag"] == "halfnorm" and card["preprocessing"]["mean"] == list(HALF)
        assert "weights_preprocessing" not in card["backbone"]
    assert named.weights_id != plain.weights_id  # other preprocessing: other feature-store entries


def test_a_squash_tag_squashes_at_test_time_and_takes_its_activation(tmp_path, micro_tags):
    backbone = create_backbone(MICRO, str(micro_file(tmp_path, "clip-squashed.pt")))
    assert backbone.tag == "squashed" and backbone.resize_mode == "squash"
    assert type(backbone.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert backbone.transform_kind(train=False) == "resize" and backbone.transform_kind(train=True) == "crop"
    card = one_attribute_card(backbone)
    assert card["backbone"]["resize_mode"] == "squash" and card["preprocessing"]["test"].startswith("Resize(square")
    wide = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 90, 3), dtype=np.uint8))
    size = backbone.image_size
    squashed = T.Compose([T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                          T.Normalize(backbone.image_mean, backbone.image_std)])(wide)
    assert torch.equal(make_transform(backbone, train=False)(wide), squashed)


def test_a_tag_without_a_file_or_an_unknown_tag_is_refused(tmp_path, micro_tags):
    with pytest.raises(ClipAdaptError, match="local weights FILE"):
        create_backbone(MICRO, "embedded", tag="halfnorm")
    with pytest.raises(ClipAdaptError, match="'nope' is not an open_clip weights tag"):
        create_backbone(MICRO, str(micro_file(tmp_path, "w.safetensors")), tag="nope")


def test_runs_rebuild_the_tagged_backbone_from_their_card(tmp_path, micro_tags):
    from clipadapt.engine.checkpoint import load_run, write_checkpoint

    backbone = create_backbone(MICRO, str(micro_file(tmp_path, "weights.safetensors")), tag="halfnorm")
    task = TaskSpec((Attribute("weather", ("clear", "foggy")),))
    method = build_method("linear_probe", backbone, task, {})
    write_checkpoint(tmp_path / "run", method, build_card(method))
    again, card = load_run(tmp_path / "run")
    assert again.backbone.tag == "halfnorm" and again.backbone.image_mean == HALF
    assert open_clip.list_pretrained_tags_by_model(MICRO) == ["halfnorm", "squashed"]


@pytest.mark.parametrize("preprocess, words", [("letterbox", "LetterBox(black"), ("resize", "Resize(square"),
                                               ("crop", "Resize(short side")])
def test_the_card_describes_the_test_transform_the_run_used(preprocess, words):
    backbone = backbone_from_config({"name": MICRO, "pretrained": None, "preprocess": preprocess})
    card = one_attribute_card(backbone)
    assert card["preprocessing"]["test"].startswith(words), card["preprocessing"]
    assert card["backbone"]["preprocess"] == preprocess
