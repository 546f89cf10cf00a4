"""A path given to predict / explain that does not exist is named as missing (with the
closest name in its folder), not described as 'not an image, folder, manifest or glob'."""

from __future__ import annotations

import pytest

from clipadapt.data.inputs import collect_images
from clipadapt.errors import ClipAdaptError


def test_a_missing_file_is_named_missing_with_the_closest_neighbour(tmp_path):
    (tmp_path / "photo_01.jpg").write_bytes(b"")
    with pytest.raises(ClipAdaptError) as info:
        collect_images(tmp_path / "photo_1.jpg")
    assert str(info.value) == f"{tmp_path / 'photo_1.jpg'} does not exist. Did you mean {tmp_path / 'photo_01.jpg'}?"


def test_a_missing_folder_says_so(tmp_path):
    with pytest.raises(ClipAdaptError, match="does not exist"):
        collect_images(tmp_path / "gone" / "a.jpg")


def test_a_glob_that_matches_nothing_keeps_its_own_message(tmp_path):
    with pytest.raises(ClipAdaptError, match="glob pattern"):
        collect_images(str(tmp_path / "*.jpg"))
