"""The lossy prediction opt-ins (bf16, int8): they change only the frozen backbone pass,
stay close to fp32, report a measured agreement, and are refused where they cannot apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipadapt.backbone import create_backbone
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import build_method
from clipadapt.predict import predict_images
from clipadapt.predict.agreement import measure_agreement


@pytest.fixture()
def images(tmp_path):
    paths = []
    for i in range(6):
        rng = np.random.default_rng(i)
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _probabilities(table):
    return table[[c for c in table.columns if ":p(" in c]].to_numpy()


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_lossy_predictions_are_close_to_fp32_and_report_their_agreement(weather_task, images, precision):
    torch.manual_seed(0)
    method = build_method("mhadapter", create_backbone("clipadapt-micro", None), weather_task, {})
    exact = predict_images(method, images, torch.device("cpu"), progress=False)
    lossy = predict_images(method, images, torch.device("cpu"), progress=False, precision=precision)
    assert exact.attrs["agreement"] is None
    agreement = lossy.attrs["agreement"]
    assert agreement.precision == precision and agreement.images == len(images)
    assert 0.98 < agreement.cosine_min <= agreement.cosine_mean <= 1.0 + 1e-6
    diff = np.abs(_probabilities(exact) - _probabilities(lossy))
    assert diff.max() < 0.05
    if precision == "int8":  # bf16 matmuls may fall back to fp32 on a CPU without bf16 units
        assert diff.max() > 0
    assert method.backbone.precision == precision  # measuring leaves the chosen precision in place
    if precision == "int8":  # the quantised weights are made once, not per call (per Ray shard)
        tower = method.backbone._lossy_tower
        predict_images(method, images, torch.device("cpu"), progress=False, precision=precision)
        assert tower is not None and method.backbone._lossy_tower is tower


def test_agreement_compares_against_a_real_fp32_pass(weather_task):
    """Measured cosine below 1 for int8, exactly 1 when the 'lossy' pass is fp32 itself."""
    torch.manual_seed(0)
    method = build_method("mhadapter", create_backbone("clipadapt-micro", None), weather_task, {}).eval()
    batch = torch.randn(4, 3, 32, 32)
    assert measure_agreement(method, batch).cosine_min == pytest.approx(1.0, abs=1e-6)
    method.backbone.set_precision("int8")
    measured = measure_agreement(method, batch)
    assert measured.cosine_min < 1.0 - 1e-7 and measured.same_prediction >= 0.75


def test_precision_is_refused_where_it_cannot_apply(weather_task, images):
    backbone = create_backbone("clipadapt-micro", None)
    with pytest.raises(ClipAdaptError, match="fp16.*fp32, bf16 or int8"):
        backbone.set_precision("fp16")
    method = build_method("microclip", backbone, weather_task, {})
    with pytest.raises(ClipAdaptError, match="microclip.*own image path"):
        predict_images(method, images, torch.device("cpu"), progress=False, precision="int8")
