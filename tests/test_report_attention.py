"""Attention maps of CLIP-MHAdapter (SPEC 1, Figure 3) and `explain_images`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_report_support import ATTRIBUTES, make_run, make_task, write_images

from clipadapt.engine.sources import make_transform
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import build_method
from clipadapt.report import (
    explain_images, explainable_methods, heads_mean, heatmap, mean_attention, mhadapter_attention, model_view, overlay, received_attention,
)
from clipadapt.report.explain import safe_stems


@pytest.fixture(scope="module")
def method(micro_backbone):
    torch.manual_seed(3)
    return build_method("mhadapter", micro_backbone, make_task()).eval()


@pytest.fixture(scope="module")
def images(method):
    torch.manual_seed(4)
    return torch.randn(3, 3, method.backbone.image_size, method.backbone.image_size)


def test_received_attention_is_the_column_mean_of_the_head_mean(method, images):
    maps = mhadapter_attention(method, images)
    assert list(maps) == list(ATTRIBUTES)
    h, w = method.backbone.grid
    with torch.no_grad():
        feats = method.backbone.forward_features(images, method.needs().tap_block)
        attention = method.attention_maps(feats)
    for a, name in enumerate(ATTRIBUTES):
        heads = method.adapters[a].attn.num_heads
        assert maps[name].shape == (3, heads, h, w)
        # Figure 3 by hand: average the heads, then the mean of each key's column.
        by_hand = attention[a].mean(dim=1).mean(dim=1).reshape(3, h, w).numpy()
        np.testing.assert_allclose(heads_mean(maps[name]), by_hand, rtol=1e-5, atol=1e-7)
        # Patch k receives what the queries give it: the map sums to 1 over the grid.
        np.testing.assert_allclose(maps[name].sum(axis=(2, 3)), 1.0, rtol=1e-5)


def test_patch_order_is_row_major_on_the_grid():
    attention = torch.zeros(1, 1, 6, 6)
    attention[..., 4] = 1.0  # every query looks at token 4
    grid = received_attention(attention, (2, 3))[0, 0]
    assert grid[1, 1] == 1.0 and grid.sum() == 1.0  # token 4 = row 1, column 1 of a 2x3 grid


def test_received_attention_rejects_a_grid_that_does_not_fit():
    with pytest.raises(ValueError, match="grid"):
        received_attention(torch.ones(1, 2, 5, 5) / 5, (2, 3))


def test_heatmap_is_upsampled_and_min_max_normalised(method, images):
    grid_map = heads_mean(mhadapter_attention(method, images)["weather"])[0]
    heat = heatmap(grid_map, (40, 30))
    assert heat.shape == (40, 30)
    assert heat.min() == pytest.approx(0.0) and heat.max() == pytest.approx(1.0)
    # At the grid's own size bilinear resampling is the identity: plain min-max.
    same = heatmap(grid_map, grid_map.shape)
    np.testing.assert_allclose(same, (grid_map - grid_map.min()) / (grid_map.max() - grid_map.min()), atol=1e-6)
    assert not heatmap(np.full((2, 2), 0.25), (8, 8)).any()  # constant map: nothing stands out


def test_mean_attention_of_pil_images_matches_the_tensor_path(method):
    pil = [Image.fromarray(np.full((40, 50, 3), v, np.uint8)) for v in (30, 200)]
    maps = mean_attention(method, pil)
    batch = torch.stack([make_transform(method.backbone, train=False)(im) for im in pil])
    expected = heads_mean(mhadapter_attention(method, batch)["weather"])
    np.testing.assert_allclose(maps["weather"], expected, rtol=1e-5)


def test_overlay_keeps_the_image_size_and_blends():
    image = Image.new("RGB", (37, 23), (255, 255, 255))
    heat = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)  # grid sized: upsampled inside
    out = overlay(image, heat, alpha=0.5)
    assert out.size == image.size and out.mode == "RGB"
    assert np.array_equal(np.asarray(overlay(image, heat, alpha=0.0)), np.asarray(image))
    assert not np.array_equal(np.asarray(out), np.asarray(image))
    with pytest.raises(ValueError):
        overlay(image, heat, alpha=1.5)


def test_model_view_is_the_centre_square():
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    image.paste((255, 0, 0), (20, 0, 40, 20))  # the centred 20x20 square is red
    view = np.asarray(model_view(image, 10))
    assert view.shape == (10, 10, 3) and (view[..., 0] > 200).all() and (view[..., 1] < 50).all()


def test_safe_stems_never_collide():
    assert safe_stems(["a/x.png", "b/x.png", "c/y z.jpg"]) == ["x", "x-2", "y_z"]


def test_explain_writes_mean_head_and_panel_images(tmp_path, micro_backbone):
    run = make_run(tmp_path / "run", micro_backbone, evaluated=False)
    imgs = write_images(tmp_path / "imgs")[:2]
    written = explain_images(run, imgs, tmp_path / "out", per_head=True)
    heads = 4  # the MHAdapter default
    expected = set()
    for stem in ("img0", "img1"):
        expected.add(f"{stem}_panel.png")
        for attr in ATTRIBUTES:
            expected.add(f"{stem}_{attr}_mean.png")
            expected.update(f"{stem}_{attr}_head{k}.png" for k in range(heads))
    assert {p.name for p in written} == expected
    assert all(p.is_file() for p in written)
    with Image.open(tmp_path / "out" / "img0_weather_mean.png") as im:
        assert im.format == "PNG" and im.size == (224, 224)

    fewer = explain_images(run, imgs, tmp_path / "out2", per_head=False)
    assert not any("_head" in p.name for p in fewer) and len(fewer) == 2 * (len(ATTRIBUTES) + 1)


def test_only_methods_with_attention_maps_are_explainable():
    supported = explainable_methods()
    assert "mhadapter" in supported and not {"zeroshot", "linear_probe", "clip_adapter", "coop"} & set(supported)


def test_explain_refuses_methods_without_attention(tmp_path, micro_backbone):
    run = make_run(tmp_path / "zs", micro_backbone, method_name="zeroshot", evaluated=False)
    with pytest.raises(ClipAdaptError, match="explain supports mhadapter"):
        explain_images(run, write_images(tmp_path / "imgs")[:1], tmp_path / "out")


def test_explain_names_a_missing_image(tmp_path, micro_backbone):
    run = make_run(tmp_path / "run", micro_backbone, evaluated=False)
    with pytest.raises(ClipAdaptError, match="nope.png"):
        explain_images(run, [tmp_path / "nope.png"], tmp_path / "out")
