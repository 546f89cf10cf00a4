"""Hugging Face transformers CLIPModel / SiglipModel folders as backbones: the converted
open_clip model gives the transformers model's image and text features; config.json
picks (or checks) the open_clip architecture; preprocessor_config.json sets the
preprocessing. Random tiny models (the micro architectures' geometry), no downloads:
identical token ids go to both sides (the tokenizers would need the hub)."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from clipadapt.backbone import create_backbone  # noqa: E402
from clipadapt.backbone.hf_transformers import TransformersFolder  # noqa: E402
from clipadapt.errors import ClipAdaptError  # noqa: E402

TOL = 1e-4
# clipadapt-micro's geometry (32 px, patch 8, width 64, 2 blocks; text width 32, 1 block, 24 tokens)
CLIP_TEXT = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                 max_position_embeddings=24, vocab_size=49408, hidden_act="quick_gelu")
CLIP_VISION = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                   image_size=32, patch_size=8, hidden_act="quick_gelu")
# clipadapt-micro-map's (SigLIP-shaped; transformers' default tanh GELU)
SIGLIP_TEXT = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=1, num_attention_heads=2,
                   max_position_embeddings=24, vocab_size=49408, pad_token_id=1, bos_token_id=None, eos_token_id=2)
SIGLIP_VISION = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                     image_size=32, patch_size=8)


def _features(out) -> torch.Tensor:  # transformers 5 returns an output object, 4.x a tensor
    return out if torch.is_tensor(out) else out.pooler_output


def _save(model, processor, folder):
    torch.manual_seed(1)
    with torch.no_grad():  # transformers initialises some tensors to zeros / ones: make every one count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.eval().save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip-hf")
    config = transformers.CLIPConfig(text_config=CLIP_TEXT, vision_config=CLIP_VISION, projection_dim=32)
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                                image_mean=[0.4, 0.45, 0.5], image_std=[0.2, 0.25, 0.3])
    return folder, _save(transformers.CLIPModel(config), processor, folder)


@pytest.fixture(scope="module")
def siglip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("siglip-hf")
    config = transformers.SiglipConfig(text_config=SIGLIP_TEXT, vision_config=SIGLIP_VISION)
    processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    return folder, _save(transformers.SiglipModel(config), processor, folder)


def _token_ids(text_ctx: int = 24) -> torch.Tensor:
    """CLIP-style rows: start token, words, end token (the row's largest id), padding."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 49000, (3, text_ctx), generator=g)
    ids[:, 0] = 49406
    for row, end in enumerate((5, 12, text_ctx - 1)):
        ids[row, end], ids[row, end + 1:] = 49407, 0
    return ids


def _converted(folder_and_model, name: str, family: str):
    """create_backbone("auto", folder): the expected architecture, and the transformers
    model's image and text features within TOL."""
    folder, hf_model = folder_and_model
    backbone = create_backbone("auto", str(folder))
    assert (backbone.name, backbone.family) == (name, family)
    image_diff, text_diff = _parity(backbone, hf_model)
    assert image_diff < TOL and text_diff < TOL, (image_diff, text_diff)
    return backbone


def _parity(backbone, hf_model) -> tuple[float, float]:
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ids = _token_ids()
    with torch.no_grad():
        ours_image = backbone.forward_features(images).embedding
        ours_text = backbone.model.encode_text(ids)
        theirs_image = _features(hf_model.get_image_features(pixel_values=images))
        theirs_text = _features(hf_model.get_text_features(input_ids=ids))
    return (ours_image - theirs_image).abs().max().item(), (ours_text - theirs_text).abs().max().item()


def test_clip_folder_converts_to_the_micro_clip_with_equal_features(clip_folder):
    backbone = _converted(clip_folder, "clipadapt-micro", "clip")
    # QuickGELU from config.json (clipadapt-micro itself builds the exact GELU)
    assert type(backbone.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    # preprocessor_config.json: its normalisation and CLIP's short side + centre crop
    assert backbone.image_mean == pytest.approx((0.4, 0.45, 0.5)) and backbone.image_std == pytest.approx((0.2, 0.25, 0.3))
    card = backbone.describe()
    assert card["weights_id"].startswith("transformers:") and "weights_preprocessing" not in card
    assert "resize_mode" not in card  # "shortest", the default
    # the card's name with the same folder: the same backbone (a named architecture is checked, then used)
    again = create_backbone(card["name"], card["pretrained"])
    assert again.weights_id == backbone.weights_id


def test_siglip_folder_converts_to_the_micro_siglip_with_equal_features(siglip_folder):
    backbone = _converted(siglip_folder, "clipadapt-micro-map", "siglip")
    assert backbone.model.logit_bias.item() == pytest.approx(siglip_folder[1].logit_bias.item())
    # SiglipImageProcessor: mean = std = 0.5, squashed to the square
    assert backbone.image_mean == pytest.approx((0.5,) * 3)
    assert backbone.describe()["resize_mode"] == "squash" and backbone.transform_kind(train=False) == "resize"


def test_geometry_matching_no_open_clip_model_is_refused_naming_the_difference(tmp_path):
    config = transformers.CLIPConfig(text_config=CLIP_TEXT, vision_config={**CLIP_VISION, "hidden_size": 48,
                                                                            "intermediate_size": 192}, projection_dim=32)
    transformers.CLIPModel(config).save_pretrained(tmp_path)
    with pytest.raises(ClipAdaptError, match=r"matches no open_clip model; nearest clipadapt-micro "
                                             r"\(vision width 48 vs 64; vision mlp 192 vs 256"):
        create_backbone("auto", str(tmp_path))
    with pytest.raises(ClipAdaptError, match=r"'clipadapt-tiny' does not fit .*config.json \(image size 32 vs 64"):
        create_backbone("clipadapt-tiny", str(tmp_path))


def test_a_named_architecture_of_another_geometry_is_refused_with_the_one_that_fits(clip_folder):
    folder, _ = clip_folder
    with pytest.raises(ClipAdaptError, match=r"does not fit .*vision width 64 vs 128.*backbone.name auto picks 'clipadapt-micro'"):
        create_backbone("clipadapt-tiny", str(folder))
    with pytest.raises(ClipAdaptError, match="not an open_clip architecture a transformers CLIPModel converts into"):
        create_backbone("clipadapt-micro-map", str(folder))


@pytest.mark.parametrize("label, config, expected", [
    ("openai/clip-vit-base-patch16", lambda: transformers.CLIPConfig(vision_config=dict(patch_size=16)),
     "ViT-B-16-quickgelu"),
    ("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", lambda: transformers.CLIPConfig(
        vision_config=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                           patch_size=14, hidden_act="gelu"),
        text_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                         hidden_act="gelu"), projection_dim=1024), "ViT-H-14"),
    ("google/siglip-base-patch16-224", lambda: transformers.SiglipConfig(), "ViT-B-16-SigLIP"),
    ("google/siglip2-base-patch16-224", lambda: transformers.SiglipConfig(text_config=dict(vocab_size=256000)),
     "ViT-B-16-SigLIP2"),
])
def test_full_size_configs_pick_their_open_clip_architecture(tmp_path, label, config, expected):
    """config.json alone (the geometry of the hub's checkpoints, no weights) picks the open_clip model."""
    config().save_pretrained(tmp_path)
    assert TransformersFolder.open(str(tmp_path)).architecture("auto") == expected, label


def test_an_incomplete_checkpoint_names_what_is_missing(tmp_path, clip_folder):
    from safetensors.torch import load_file, save_file

    folder, _ = clip_folder
    state = load_file(str(folder / "model.safetensors"))
    del state["vision_model.post_layernorm.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(ClipAdaptError, match=r"1 tensors missing \(e.g. \['vision_model.post_layernorm.weight'\]\)"):
        create_backbone("auto", str(tmp_path))


def test_other_transformers_models_and_tags_are_refused(tmp_path, clip_folder):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ClipAdaptError, match="model_type 'bert' is not a transformers CLIPModel"):
        create_backbone("auto", str(tmp_path))
    with pytest.raises(ClipAdaptError, match="brings its own preprocessing"):
        create_backbone("auto", str(clip_folder[0]), tag="openai")
    with pytest.raises(ClipAdaptError, match="backbone.name 'auto' takes the architecture"):
        create_backbone("auto", None)


def test_a_run_config_names_the_folder_with_name_auto(clip_folder):
    from clipadapt.backbone import backbone_from_config
    from clipadapt.config import validate_config

    cfg = validate_config({"backbone": {"name": "auto", "pretrained": str(clip_folder[0])}})
    assert backbone_from_config(cfg.backbone).name == "clipadapt-micro"


def test_a_siglip_folder_encodes_text_with_the_tokenizer_saved_in_it(tmp_path):
    """SigLIP's open_clip tokenizer comes from the hub; the one save_pretrained wrote serves offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    raw = Tokenizer(models.WordLevel({"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "photo": 4, "of": 5, "cat": 6},
                                     unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>",
                                         unk_token="<unk>").save_pretrained(tmp_path)
    transformers.SiglipConfig().save_pretrained(tmp_path)
    source = TransformersFolder.open(str(tmp_path))
    ids = source.tokenizer("ViT-B-16-SigLIP")(["A photo of a Cat."])  # open_clip's cleaning: lower case, no dots
    assert ids.shape == (1, 64) and ids[0, :6].tolist() == [3, 4, 5, 3, 6, 0]
    assert source.tokenizer("clipadapt-micro-map") is None  # CLIP's tokenizer ships with open_clip


def test_a_hub_name_is_fetched_then_converted_and_offline_says_so(clip_folder, monkeypatch):
    """hf-transformers:org/repo goes through huggingface_hub.snapshot_download (faked here: no hub)."""
    import huggingface_hub

    calls = []

    def snapshot(repo, allow_patterns, local_files_only):
        calls.append((repo, local_files_only))
        return str(clip_folder[0])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.setattr("clipadapt.backbone.hf_transformers.hub_reachable", lambda: True)
    backbone = create_backbone("auto", "hf-transformers:someone/tiny-clip")
    assert (backbone.name, backbone.pretrained) == ("clipadapt-micro", "hf-transformers:someone/tiny-clip")
    assert calls == [("someone/tiny-clip", False)]

    def offline(repo, allow_patterns, local_files_only):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ClipAdaptError, match=r"Could not fetch 'someone/tiny-clip'.*huggingface-cli download"):
        create_backbone("auto", "hf-transformers:someone/tiny-clip")

    # the hub unreachable: the cache alone is asked, once, with no network attempt to retry
    calls.clear()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.setattr("clipadapt.backbone.hf_transformers.hub_reachable", lambda: False)
    create_backbone("auto", "hf-transformers:someone/tiny-clip")
    assert calls == [("someone/tiny-clip", True)]
