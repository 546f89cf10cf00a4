"""The explicit ViT forward matches open_clip, and weights load from every source format."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from clipadapt.backbone import create_backbone
from clipadapt.errors import ClipAdaptError


def test_explicit_forward_matches_open_clip_embedding(micro_backbone):
    images = torch.randn(3, 3, 32, 32)
    feats = micro_backbone.forward_features(images, tap_block=1)
    reference = micro_backbone.model.encode_image(images)
    assert torch.allclose(feats.embedding, reference, atol=1e-5)


def test_tap_tokens_are_the_output_of_that_block_without_cls(micro_backbone):
    images = torch.randn(2, 3, 32, 32)
    _, intermediates = micro_backbone.visual.transformer.forward_intermediates(
        micro_backbone.embed(images), indices=[0])
    feats = micro_backbone.forward_features(images, tap_block=1)
    assert feats.tokens.shape == (2, micro_backbone.num_patches, micro_backbone.width)
    assert torch.allclose(feats.tokens, intermediates[0][:, 1:], atol=1e-6)


def test_tap_block_out_of_range_is_a_clear_error(micro_backbone):
    with pytest.raises(ClipAdaptError, match="tap_block must be in 1..2"):
        micro_backbone.forward_features(torch.randn(1, 3, 32, 32), tap_block=3)


def test_value_path_block_ignores_other_tokens(micro_backbone):
    # Each token of the value path depends on itself only: changing token 2 leaves token 1.
    x = micro_backbone.embed(torch.randn(1, 3, 32, 32))
    y = x.clone()
    y[:, 2] += 5.0
    a, b = micro_backbone.value_path_block(1, x), micro_backbone.value_path_block(1, y)
    assert torch.allclose(a[:, 1], b[:, 1], atol=1e-6)
    assert not torch.allclose(a[:, 2], b[:, 2])


def test_text_embeddings_path_equals_encode_text(micro_backbone):
    tokens = micro_backbone.tokenize(["a photo in foggy weather.", "a photo with glare."])
    direct = micro_backbone.model.encode_text(tokens)
    via_embeddings = micro_backbone.encode_text_embeddings(micro_backbone.token_embeddings(tokens), tokens.argmax(-1))
    assert torch.allclose(direct, via_embeddings, atol=1e-5)
    assert torch.allclose(micro_backbone.encode_text(["a photo with glare."]), F.normalize(direct[1:], dim=-1), atol=1e-5)


def test_random_weights_are_seeded():
    a = create_backbone("clipadapt-micro", None)
    b = create_backbone("clipadapt-micro", "random")
    assert a.weights_id == b.weights_id
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_checkpoint_in_open_clip_format_loads(tmp_path, micro_backbone, suffix):
    state = {k: v.clone() + 0.5 for k, v in micro_backbone.model.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:  # a training-script checkpoint: nested under state_dict, DataParallel prefixes
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded = create_backbone("clipadapt-micro", str(path))
    assert torch.equal(loaded.model.visual.proj, state["visual.proj"])
    assert loaded.weights_id.startswith("file:")
    assert loaded.weights_id != micro_backbone.weights_id


def test_checkpoint_for_another_architecture_is_refused(tmp_path, micro_backbone):
    path = tmp_path / "micro.safetensors"
    save_file({k: v.contiguous() for k, v in micro_backbone.model.state_dict().items()}, str(path))
    with pytest.raises(ClipAdaptError, match="do not fit model 'clipadapt-tiny'"):
        create_backbone("clipadapt-tiny", str(path))


def test_pickled_code_in_weights_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(ClipAdaptError, match="refused"):
        create_backbone("clipadapt-micro", str(path))


def test_unknown_backbone_and_tag_get_suggestions():
    with pytest.raises(ClipAdaptError, match="Unknown backbone 'ViT-B-61'"):
        create_backbone("ViT-B-61", None)
    with pytest.raises(ClipAdaptError, match="neither a file nor an open_clip weights tag"):
        create_backbone("clipadapt-micro", "laion-nonexistent")


def test_missing_weights_file_names_it(tmp_path):
    with pytest.raises(ClipAdaptError, match="not found"):
        create_backbone("clipadapt-micro", str(tmp_path / "nope.safetensors"))
