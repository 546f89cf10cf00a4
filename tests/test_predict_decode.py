"""Large JPEGs are decoded in draft mode at the model's size (close to a full decode);
anything else, bad files included, takes the checked full path with its message."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipadapt.data.transforms import eval_transform
from clipadapt.errors import ClipAdaptError
from clipadapt.predict.decode import SizedImageDataset, open_at_size


@pytest.fixture()
def photo(tmp_path):
    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)).resize((1024, 512), Image.BICUBIC)
    path = tmp_path / "street.jpg"
    smooth.save(path, quality=92)
    return path


def test_a_large_jpeg_decodes_at_reduced_scale_but_never_below_twice_the_size(photo):
    image = open_at_size(photo, 56)
    assert image.mode == "RGB" and image.size == (256, 128)  # 1/4 scale: the short side stays >= 2 x 56
    assert open_at_size(photo, 112).size == (512, 256)  # 1/2 scale
    assert open_at_size(photo, 150) is None  # 512 < 4 x 150: a 1/2 scale would go below 2 x 150, full path


def test_draft_pixels_are_close_to_a_full_decode(photo, tmp_path):
    transform = eval_transform(56)
    fast = SizedImageDataset([photo], transform, size=56)[0]
    with Image.open(photo) as img:
        full = transform(img.convert("RGB"))
    assert fast[1:] == (0, True)
    cosine = torch.nn.functional.cosine_similarity(fast[0].flatten(), full.flatten(), dim=0)
    assert 0.99 < cosine < 1.0  # close, and not the same pixels (the draft path did run)


def test_non_jpeg_and_bad_files_take_the_checked_path(tmp_path):
    png = tmp_path / "a.png"
    Image.new("RGB", (900, 900), (10, 20, 30)).save(png)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"<html>not an image</html>")
    assert open_at_size(png, 100) is None and open_at_size(bad, 100) is None
    flagged = SizedImageDataset([png, bad], eval_transform(32), size=32, on_error="flag")
    assert flagged[0][2] and not flagged[1][2] and "bad.jpg" in flagged.error_for(1)
    with pytest.raises(ClipAdaptError, match="bad.jpg"):
        SizedImageDataset([bad], eval_transform(32), size=32)[0]


@pytest.mark.parametrize("side", [64, 96, 127])  # 2x, 3x, just under 4x the 32 px input
def test_predict_draft_and_full_and_explain_agree_on_a_small_jpeg(micro_backbone, tmp_path, monkeypatch, side):
    """A JPEG under 4x the model input is decoded in full by `predict` too: the same
    probabilities as `predict --decode full` and `explain` (which once differed by 0.02)."""
    import clipadapt.report.explain as explain
    from test_report_support import make_run

    from clipadapt.engine.checkpoint import load_run
    from clipadapt.predict import predict_images

    run = make_run(tmp_path / "run", micro_backbone, evaluated=False)
    rng = np.random.default_rng(side)
    photo = tmp_path / "small.jpg"
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((side, side), Image.BICUBIC).save(
        photo, quality=90)
    method, _ = load_run(run, device="cpu")
    draft, full = (predict_images(method, [photo], "cpu", progress=False, decode=d) for d in ("draft", "full"))
    seen = []
    real = explain.explain_batch
    monkeypatch.setattr(explain, "explain_batch", lambda m, images: seen.append(real(m, images)) or seen[-1])
    explain.explain_images(run, [photo], tmp_path / "explained", per_head=False, device="cpu")
    for attr in method.task.attributes:
        columns = [f"{attr.name}:p({c})" for c in attr.classes]
        assert draft[columns].to_numpy() == pytest.approx(full[columns].to_numpy(), abs=1e-6)
        assert seen[0].probabilities[attr.name] == pytest.approx(full[columns].to_numpy(), abs=1e-6)
