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


def test_a_large_jpeg_decodes_at_reduced_scale_but_never_below_the_size(photo):
    image = open_at_size(photo, 112)
    assert image.mode == "RGB" and image.size == (256, 128)  # 1/4 scale: the short side stays >= 112
    assert open_at_size(photo, 300) is None  # 512 < 2 x 300: nothing to gain, full path


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
