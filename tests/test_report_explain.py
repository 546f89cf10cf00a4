"""`explain` for PromptPAR (each part token's attention over its strip) and microCLIP
(SOAP attention and the Normalised-Cut foreground mask): the maps are proper maps and
the pictures are written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_report_support import save_run, write_images
from typer.testing import CliRunner

from clipadapt.backbone import create_backbone
from clipadapt.cli.main import app
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import build_method
from clipadapt.methods.promptpar.regions import strips_for_grid
from clipadapt.report import explain_images, model_view
from clipadapt.report.explain import blocky
from clipadapt.report.overlays import attention_overlays, has_overlays
from clipadapt.report.part_maps import last_block_attention, last_block_input, part_attention
from clipadapt.report.soap_maps import soap_maps
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec

RUNNER = CliRunner()
PAR_TASK = TaskSpec((Attribute("Hat", BINARY_CLASSES, template="A pedestrian wearing a hat"),
                     Attribute("Backpack", BINARY_CLASSES, template="A pedestrian wearing a backpack")), multilabel=True)
PAR_PARAMS = {"fusion_width": 32, "fusion_heads": 4, "global_prompts": 2, "group_prompts": 2, "text_prompts": 2,
              "drop_path": 0.0}
BIRDS = TaskSpec((Attribute("species", ("red finch", "blue thrush", "green wren"), "a photo of a {}."),))
DESCRIPTIONS = {c: [f"a small bird, the {c}.", f"the marks of the {c}."] for c in BIRDS.attributes[0].classes}


def preprocessed(method, count: int = 3) -> torch.Tensor:
    torch.manual_seed(5)
    size = method.backbone.image_size
    return torch.randn(count, 3, size, size)


# ------------------------------------------------------------------ PromptPAR
@pytest.fixture(scope="module")
def promptpar(micro_backbone):
    torch.manual_seed(1)
    return build_method("promptpar", micro_backbone, PAR_TASK, PAR_PARAMS).eval()


def test_captured_tokens_are_the_real_input_of_the_last_block(promptpar):
    images = preprocessed(promptpar)
    bb = promptpar.backbone
    with torch.no_grad():
        x, mask = last_block_input(promptpar, images)
        rebuilt = bb.project_tokens(bb.block(bb.num_blocks - 1, x, attn_mask=mask), ln_post=promptpar.params.token_norm)
        torch.testing.assert_close(rebuilt, promptpar.encode_tokens(images))


def test_part_tokens_attend_only_inside_their_group_and_strip(promptpar):
    with torch.no_grad():
        weights = last_block_attention(promptpar, preprocessed(promptpar)).mean(dim=1)  # [B, T, T]
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(weights.shape[:2]))  # softmax rows
    layout = promptpar.layout
    for g, (first, last) in enumerate(strips_for_grid(layout.grid[0], layout.groups, promptpar.params.overlap)):
        allowed = [layout.part_index(g), *layout.group_prompt_indices(g), *layout.patch_indices_of_strip(first, last)]
        outside = torch.ones(layout.length, dtype=torch.bool)
        outside[allowed] = False
        assert weights[:, layout.part_index(g), outside].abs().max() == 0.0


def test_part_maps_sum_to_one_over_their_strip_and_are_zero_elsewhere(promptpar):
    parts = part_attention(promptpar, preprocessed(promptpar))
    groups, (rows, cols) = promptpar.layout.groups, promptpar.layout.grid
    assert parts.maps.shape == (3, groups, rows, cols) and parts.patch_share.shape == (3, groups)
    np.testing.assert_allclose(parts.maps.sum(axis=(2, 3)), 1.0, rtol=1e-5)
    assert ((parts.patch_share > 0) & (parts.patch_share <= 1 + 1e-6)).all()
    assert (parts.maps >= 0).all()
    assert parts.labels == [f"rows {a}-{b}" for a, b in strips_for_grid(rows, groups, promptpar.params.overlap)]
    for g, (first, last) in enumerate(parts.regions):
        inside = np.zeros(rows * cols, dtype=bool)
        inside[first:last + 1] = True
        flat = parts.maps[:, g].reshape(len(parts.maps), -1)
        assert not flat[:, ~inside].any()  # nothing outside the strip
        assert flat[:, inside].min() > 0  # every patch of the strip gets some attention


def test_part_attention_refuses_runs_without_parts(micro_backbone):
    plain = build_method("promptpar", micro_backbone, PAR_TASK, {**PAR_PARAMS, "regions": False})
    assert not has_overlays(plain)
    with pytest.raises(ClipAdaptError, match="regions: false"):
        part_attention(plain, preprocessed(plain))


def test_explain_a_promptpar_run_writes_a_picture_per_part(promptpar, tmp_path):
    run = save_run(tmp_path / "par", promptpar)
    written = explain_images(run, write_images(tmp_path / "imgs")[:2], tmp_path / "out")
    groups = promptpar.layout.groups
    expected = {f"img{i}_part{g}.png" for i in range(2) for g in range(1, groups + 1)} | {"img0_panel.png", "img1_panel.png"}
    assert {p.name for p in written} == expected
    with Image.open(tmp_path / "out" / "img0_part1.png") as part:
        assert part.size == (224, 224) and part.mode == "RGB"
    with Image.open(tmp_path / "out" / "img0_panel.png") as panel:
        assert panel.width > 2 * panel.height  # the view and four parts side by side


def test_letterboxed_runs_are_shown_letterboxed():
    tall = Image.new("RGB", (20, 60), (250, 10, 10))
    view = np.asarray(model_view(tall, 60, preprocess="letterbox"))
    assert view.shape == (60, 60, 3)
    assert view[:, :5].max() < 10 and view[:, -5:].max() < 10  # black borders left and right
    assert view[30, 30, 0] > 200  # the image in the middle
    cropped = np.asarray(model_view(tall, 60))
    assert cropped[:, :5, 0].min() > 200  # a centre crop has no border


# ------------------------------------------------------------------ microCLIP
@pytest.fixture(scope="module")
def microclip():
    torch.manual_seed(2)
    # a backbone of its own: microCLIP makes the backbone's LayerNorms trainable, in place
    return build_method("microclip", create_backbone("clipadapt-micro", None), BIRDS, {"descriptions": DESCRIPTIONS}).eval()


def test_soap_attention_and_null_token_sum_to_one_and_the_mask_is_binary(microclip):
    images = preprocessed(microclip, 4)
    maps = soap_maps(microclip, images)
    h, w = microclip.backbone.grid
    assert maps.attention.shape == (4, h, w) and maps.mask.shape == (4, h, w) and maps.null_weight.shape == (4,)
    np.testing.assert_allclose(maps.attention.sum(axis=(1, 2)) + maps.null_weight, 1.0, rtol=1e-5)
    assert set(np.unique(maps.mask)) <= {0.0, 1.0}
    assert (maps.mask.sum(axis=(1, 2)) >= 1).all()  # the sign fix keeps the strongest patch as foreground
    with torch.no_grad():
        expected = torch.softmax(microclip.forward_images(images)[0], -1).numpy()
    np.testing.assert_allclose(maps.probabilities, expected, rtol=1e-5, atol=1e-6)  # what predict reports


def test_masks_stay_crisp_when_enlarged():
    mask = np.array([[0, 1], [1, 0]], dtype=np.float32)
    big = blocky(mask, 8)
    assert big.shape == (8, 8) and set(np.unique(big)) == {0.0, 1.0}
    assert big[:4, 4:].all() and not big[:4, :4].any()


def test_explain_a_microclip_run_writes_attention_mask_and_panel(microclip, tmp_path):
    run = save_run(tmp_path / "mc", microclip)
    write_images(tmp_path / "imgs")
    result = RUNNER.invoke(app, ["explain", str(tmp_path / "imgs"), "-c", str(run), "-o", str(tmp_path / "out"),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"img0_soap.png", "img0_mask.png", "img0_panel.png"} <= names and len(names) == 3 * 6
    with Image.open(tmp_path / "out" / "img0_mask.png") as im:
        assert im.size == (224, 224)


def test_microclip_without_soap_has_nothing_to_show(tmp_path):
    plain = build_method("microclip", create_backbone("clipadapt-micro", None), BIRDS,
                         {"descriptions": DESCRIPTIONS, "use_soap": False})
    assert not has_overlays(plain)
    with pytest.raises(ClipAdaptError, match="use_soap: false"):
        soap_maps(plain, preprocessed(plain))


# ------------------------------------------------------------------ overlays for the web page
def test_overlays_are_labelled_per_method(promptpar, microclip):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    (par,) = attention_overlays(promptpar, [image])
    assert list(par) == [f"part {g + 1} (rows {a}-{b})" for g, (a, b) in
                         enumerate(strips_for_grid(4, 4, promptpar.params.overlap))]
    (birds,) = attention_overlays(microclip, [image], size=64)
    assert list(birds) == ["SOAP attention", "foreground mask (Normalised Cut)"]
    assert all(im.size == (64, 64) for im in birds.values())
