"""The feature store serves the same numbers as running the backbone, and augmented views rotate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipadapt.config import validate_config
from clipadapt.data.dataset import LabelledImages
from clipadapt.engine.trainer import Runner
from clipadapt.methods import build_method


@pytest.fixture()
def images(tmp_path, weather_task):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 56, 3)).astype(np.uint8)).save(path)
        paths.append(path)
    return LabelledImages(paths, (np.arange(12) % 5)[:, None], weather_task)


def runner(backbone, task, tmp_path, **features):
    cfg = validate_config({"train": {"eval_batch_size": 5}, "features": {"dir": str(tmp_path / "cache"), **features}})
    return Runner(build_method("mhadapter", backbone, task, {"beta": 0.5}), cfg, progress=False)


def test_cached_and_direct_predictions_agree(tmp_path, micro_backbone, weather_task, images):
    cached = runner(micro_backbone, weather_task, tmp_path)
    direct = runner(micro_backbone, weather_task, tmp_path, cache="off")
    direct.method.load_state_dict(cached.method.state_dict())
    a = cached.predict_proba(images)[0]
    b = direct.predict_proba(images)[0]
    assert cached.uses_store(train=False) and not direct.uses_store(train=False)
    # fp16 tokens in the store; on CUDA both paths also run under bf16 autocast (8-bit mantissa)
    assert np.allclose(a, b, atol=2e-3 if cached.device.type == "cpu" else 1e-2)


def test_augmented_views_are_stored_and_drawn_per_epoch(tmp_path, micro_backbone, weather_task, images):
    r = runner(micro_backbone, weather_task, tmp_path, train_views=3)
    source = r.source(images, train=True)
    assert source.store.done.shape == (12, 3) and source.store.complete
    order = np.arange(12)
    epoch0 = next(source.batches(order, 12, epoch=0))[0].tokens
    epoch1 = next(source.batches(order, 12, epoch=1))[0].tokens
    assert not torch.allclose(epoch0, epoch1)  # a different stored view per epoch
    # the same store entry is found again (content-keyed), nothing recomputed
    again = runner(micro_backbone, weather_task, tmp_path, train_views=3).source(images, train=True)
    assert again.key == source.key


def test_store_key_changes_with_the_image_content(tmp_path, micro_backbone, weather_task, images):
    first = runner(micro_backbone, weather_task, tmp_path).source(images, train=False).key
    Image.new("RGB", (40, 56), (1, 2, 3)).save(images.paths[0])
    assert runner(micro_backbone, weather_task, tmp_path).source(images, train=False).key != first
