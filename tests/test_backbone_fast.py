"""The fast image pass (fused attention, oneDNN epilogues, [CLS]-only last block, early
stop) gives the block-by-block forward's numbers; the int8 path is close, not equal."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clipadapt.backbone import create_backbone
from clipadapt.backbone.fast import Int8Tower, _LiveProjections, _OneDnnProjections, default_projections
from clipadapt.backbone.fast import onednn_available, supports_fast_path
from clipadapt.errors import ClipAdaptError


@pytest.fixture(scope="module")
def tiny():
    return create_backbone("clipadapt-tiny", None)


def reference(backbone, images, tap_block):
    slow = copy.copy(backbone)  # same modules, reference path
    slow.fast = False
    return slow.forward_features(images, tap_block)


@pytest.mark.parametrize("autograd", [False, True], ids=["inference", "autograd"])
@pytest.mark.parametrize("tap", [None, 1, "last-but-one", "last"])
def test_fast_pass_equals_the_block_by_block_forward(tiny, autograd, tap):
    tap = {"last-but-one": tiny.num_blocks - 1, "last": tiny.num_blocks}.get(tap, tap)
    images = torch.randn(3, 3, tiny.image_size, tiny.image_size)
    with torch.set_grad_enabled(autograd):
        fast, slow = tiny.forward_features(images, tap), reference(tiny, images, tap)
    assert tiny.fast
    assert torch.allclose(fast.embedding, slow.embedding, atol=1e-5)
    assert torch.allclose(fast.embedding, tiny.model.encode_image(images), atol=1e-5)
    if tap is None:
        assert fast.tokens is None
    else:
        assert fast.tokens.shape == (3, tiny.num_patches, tiny.width)
        assert torch.allclose(fast.tokens, slow.tokens, atol=1e-5)


def test_oneDNN_serves_inference_and_the_portable_path_autograd(tiny):
    x = torch.randn(1, 3, 8)
    with torch.inference_mode():
        kinds = {type(p) for p in default_projections(tiny.visual.transformer.resblocks, x)}
    assert kinds == ({_OneDnnProjections} if onednn_available() else {_LiveProjections})
    kinds = {type(p) for p in default_projections(tiny.visual.transformer.resblocks, x)}
    assert kinds == {_LiveProjections}


def test_tokens_only_stops_after_the_tapped_block(tiny):
    images = torch.randn(2, 3, tiny.image_size, tiny.image_size)
    broken = copy.deepcopy(tiny)
    with torch.no_grad():
        for p in broken.visual.transformer.resblocks[-1].parameters():
            p.fill_(float("nan"))  # the last block poisons whatever it touches
        early = broken.forward_features(images, 1, embedding=False)
        full = broken.forward_features(images, 1)
    assert early.embedding is None
    assert torch.allclose(early.tokens, reference(tiny, images, 1).tokens, atol=1e-5)
    assert torch.isnan(full.embedding).all()  # the check above can fail: the full pass does run it


def test_tokens_only_without_a_tap_is_refused(tiny):
    with pytest.raises(ClipAdaptError, match="needs a tap_block"):
        tiny.forward_features(torch.randn(1, 3, tiny.image_size, tiny.image_size), None, embedding=False)


def test_unfamiliar_blocks_take_the_reference_path(tiny):
    odd = copy.deepcopy(tiny)
    odd.visual.transformer.resblocks[0].attn = nn.Identity()
    assert supports_fast_path(tiny.visual) and not supports_fast_path(odd.visual)


def test_int8_path_is_close_but_not_equal(tiny):
    images = torch.randn(4, 3, tiny.image_size, tiny.image_size)
    tokens, embedding = Int8Tower(tiny)(images, tap_block=1)
    exact = reference(tiny, images, 1)
    cosine = F.cosine_similarity(embedding, exact.embedding).min()
    assert 0.99 < cosine and not torch.equal(embedding, exact.embedding)
    assert F.cosine_similarity(tokens.flatten(1), exact.tokens.flatten(1)).min() > 0.99
