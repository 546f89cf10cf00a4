"""`clipadapt export --format onnx`: every fixed-graph method exported from a run folder,
predicted with onnxruntime (with and without torch) against `predict --checkpoint`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clipadapt.backbone import create_backbone
from clipadapt.data.pil_transforms import array_transform
from clipadapt.data.transforms import transform_for
from clipadapt.engine.checkpoint import build_card, write_checkpoint
from clipadapt.errors import ClipAdaptError
from clipadapt.export import export_run
from clipadapt.methods import build_method
from clipadapt.predict import predict_images
from clipadapt.runtime import OnnxModel, predict_onnx, read_metadata
from clipadapt.task import Attribute, TaskSpec

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

PARITY = 1e-4  # largest probability difference allowed between onnxruntime and torch
STREETS = TaskSpec((Attribute("weather", ("clear", "foggy", "rainy")), Attribute("glare", ("no", "yes"))))
PEDESTRIANS = TaskSpec((Attribute("hat", ("no", "yes"), template="A pedestrian wearing a hat"),
                        Attribute("bag", ("no", "yes"), template="A pedestrian carrying a bag")), multilabel=True)
BIRDS = TaskSpec((Attribute("species", ("crow", "robin", "wren")),))
SMALL_FUSION = {"fusion_width": 64, "fusion_heads": 4}
# name -> (method, task, params, preprocessing, interpolation): every preprocessing kind is covered
RUNS = {
    "mhadapter": ("mhadapter", STREETS, {"beta": 0.6}, "crop", "bicubic"),
    "clip_adapter": ("clip_adapter", STREETS, {}, "resize", "bilinear"),
    "coop": ("coop", STREETS, {"n_ctx": 4}, "crop", "bicubic"),
    "linear_probe": ("linear_probe", STREETS, {}, "letterbox", "bicubic"),
    "zeroshot": ("zeroshot", STREETS, {}, "crop", "bicubic"),
    "majority": ("majority", STREETS, {}, "crop", "bicubic"),
    "promptpar": ("promptpar", PEDESTRIANS, SMALL_FUSION, "letterbox", "bilinear"),
    # logit_scale 2 (not 100): probabilities away from 0 / 1, so a difference in the logits shows
    "microclip-mean-query": ("microclip", BIRDS, {"query": "mean", "logit_scale": 2.0}, "crop", "bicubic"),
    "microclip-cls-only": ("microclip", BIRDS, {"use_soap": False, "logit_scale": 2.0}, "crop", "bicubic"),
    "mhadapter-eva": ("mhadapter", STREETS, {}, "crop", "bicubic", "clipadapt-micro-eva"),  # timm tower, rotary
}


def make_run(folder: Path, method_name: str, task: TaskSpec, params: dict, preprocess: str, interpolation: str,
             backbone_name: str = "clipadapt-micro") -> Path:
    """A run folder of a micro tower whose trained tensors are random (not their init), so
    every trained piece shows in the outputs."""
    backbone = create_backbone(backbone_name, None).set_preprocessing(preprocess, interpolation=interpolation)
    method = build_method(method_name, backbone, task, params)
    g = torch.Generator().manual_seed(1)
    state = {}
    for key, value in method.trained_state().items():
        if value.is_floating_point():
            noise = 0.3 * torch.randn(value.shape, generator=g)
            value = (value + noise).abs() + 0.5 if key.endswith(("running_var", "counts_0", "counts_1")) else value + noise
        state[key] = value
    card = build_card(method, config={"train": {"threshold": 0.45}}, seed=0)
    write_checkpoint(folder, method, card, state)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Photos of several shapes (one large JPEG, decoded in draft mode) and one bad file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(40, 30), (30, 52), (32, 32), (300, 180), (61, 47), (90, 140)]):
        pixels = (rng.random((h, w, 3)) * 80 + np.linspace(0, 170, w)[None, :, None]).astype(np.uint8)
        path = root / (f"photo_{i}.jpg" if i % 2 else f"photo_{i}.png")
        Image.fromarray(pixels).save(path)
        paths.append(path)
    (root / "broken.jpg").write_bytes(b"<html>not an image</html>")
    return paths[:3] + [root / "broken.jpg"] + paths[3:]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (run folder, exported file), made on first use."""
    root = tmp_path_factory.mktemp("exports")
    made = {}

    def get(name: str):
        if name not in made:
            run = make_run(root / name, *RUNS[name])
            made[name] = (run, export_run(run, root / f"{name}.onnx").path)
        return made[name]

    return get


def probability_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if ":p" in c]


@pytest.mark.parametrize("name", list(RUNS))
def test_onnxruntime_gives_the_probabilities_of_predict_checkpoint(name, exported, images):
    from clipadapt.engine.checkpoint import load_run

    run, onnx_file = exported(name)
    method, _ = load_run(run)
    torch_table = predict_images(method, images, torch.device("cpu"), batch_size=4, progress=False, threshold=0.45)
    onnx_table = predict_onnx(onnx_file, images, batch_size=3)  # other batch sizes: the batch axis is dynamic
    assert list(onnx_table.columns) == list(torch_table.columns)
    assert onnx_table["ok"].tolist() == torch_table["ok"].tolist() == [True] * 3 + [False] + [True] * 3
    assert onnx_table["error"].tolist() == torch_table["error"].tolist()
    columns = probability_columns(torch_table)
    diff = np.nanmax(np.abs(onnx_table[columns].to_numpy(float) - torch_table[columns].to_numpy(float)))
    print(f"ONNX parity {name}: max abs probability difference {diff:.2e}, file {onnx_file.stat().st_size} bytes")
    assert diff < PARITY, (name, diff)
    # the entropy is computed from these probabilities by the same code: near-equal too
    # (its slope is steeper than theirs near p = 0, hence the looser bound)
    entropy = [c for c in torch_table.columns if c.endswith(":entropy")]
    assert np.nanmax(np.abs(onnx_table[entropy].to_numpy(float) - torch_table[entropy].to_numpy(float)),
                     initial=0.0) < 20 * PARITY
    decisions = [c for c in torch_table.columns if c not in columns + entropy and c not in ("path", "ok", "error")]
    assert (onnx_table[decisions] == torch_table[decisions]).all().all()


def test_the_file_carries_preprocessing_classes_threshold_and_the_run(exported):
    run, onnx_file = exported("promptpar")
    meta = read_metadata(onnx_file)
    card = json.loads((run / "card.json").read_text())
    assert meta["method"] == "promptpar" and meta["multilabel"] is True and meta["threshold"] == 0.45
    assert meta["preprocessing"]["kind"] == "letterbox" and meta["preprocessing"]["interpolation"] == "bilinear"
    assert meta["preprocessing"]["image_size"] == 32 and len(meta["preprocessing"]["mean"]) == 3
    assert [a["name"] for a in meta["attributes"]] == ["hat", "bag"] and meta["attributes"][0]["classes"] == ["no", "yes"]
    assert meta["run"]["backbone"] == card["backbone"] and len(meta["run"]["checkpoint_sha256"]) == 64
    model = OnnxModel(onnx_file)
    outputs = {o.name: o.shape for o in model.session.get_outputs()}
    assert set(outputs) == {"hat", "bag"} and len(outputs["hat"]) == 1  # [B]: the probability that it is present
    single = OnnxModel(exported("zeroshot")[1])
    assert [o.shape[1] for o in single.session.get_outputs()] == [3, 2]  # [B, K]
    assert not any(i.name == "input_ids" for i in single.session.get_inputs())  # the text side is constant


def test_microclip_with_the_normalised_cut_is_refused_with_the_reason(tmp_path):
    run = make_run(tmp_path / "run", "microclip", BIRDS, {}, "crop", "bicubic")
    with pytest.raises(ClipAdaptError, match="eigen-solve .* has no ONNX operator"):
        export_run(run, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_pil_preprocessing_equals_torchvision(images):
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    from clipadapt.data.images import load_image

    for path in [p for p in images if p.name != "broken.jpg"]:
        image = load_image(path)
        for kind in ("crop", "letterbox", "resize"):
            for interpolation in ("bicubic", "bilinear"):
                for size in (32, 224):
                    ours = array_transform(kind, size, mean, std, interpolation)(image)
                    theirs = transform_for(kind, False, size, mean, std, interpolation)(image).numpy()
                    assert ours.shape == theirs.shape and np.array_equal(ours, theirs), (path.name, kind, size)


BLOCK_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'torchvision', 'open_clip', 'timm'):
            raise ImportError('torch is blocked in this test: ' + name)
sys.meta_path.insert(0, NoTorch())
"""


def test_the_runtime_predicts_without_torch(exported, images, tmp_path):
    run, onnx_file = exported("mhadapter")
    out = tmp_path / "preds.csv"
    script = BLOCK_TORCH + (
        "from clipadapt.runtime.__main__ import main\n"
        f"code = main([{', '.join(repr(str(p)) for p in images)}, '--model', {str(onnx_file)!r}, '--out', {str(out)!r}])\n"
        "assert not any(m.split('.')[0] in ('torch', 'torchvision') for m in sys.modules)\n"
        "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote 7 rows" in done.stdout and "1 of 7 images skipped" in done.stdout
    from clipadapt.predict.tables import skipped_list_path

    table = pd.read_csv(out)
    assert table["ok"].tolist() == [True] * 3 + [False] + [True] * 3
    assert skipped_list_path(out).is_file()
    expected = predict_onnx(onnx_file, images)
    columns = probability_columns(expected)
    assert np.allclose(table[columns].to_numpy(float), expected[columns].to_numpy(float), atol=1e-6, equal_nan=True)


def test_cli_export_int8_prints_its_agreement_and_predict_model_runs_it(exported, images, tmp_path):
    from typer.testing import CliRunner

    from clipadapt.cli.main import app

    run, fp32_file = exported("mhadapter")
    runner = CliRunner()
    folder = images[0].parent
    result = runner.invoke(app, ["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m8.onnx"), "--int8",
                                 "--images", str(folder)])
    assert result.exit_code == 0, result.output
    assert "int8 measured against fp32 on the first 6 image(s)" in result.output and "same prediction" in result.output
    meta = read_metadata(tmp_path / "m8.onnx")
    assert meta["precision"] == "int8" and meta["int8_agreement"]["images"] == 6
    result = runner.invoke(app, ["predict", str(folder), "--model", str(tmp_path / "m8.onnx"), "--out",
                                 str(tmp_path / "p.parquet"), "--quiet"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "p.parquet")
    assert len(table) == 7 and table["ok"].sum() == 6
    result = runner.invoke(app, ["predict", str(folder), "--model", str(fp32_file), "--checkpoint", str(run)])
    assert result.exit_code == 2 and "either --checkpoint or --model" in result.output


def test_the_benchmark_runs_on_the_micro_clip():
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "onnx_export.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--repeats", "1"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert set(result["speed_vs_torch_fp32"]) == {"onnx_fp32", "onnx_int8"}
    assert result["agreement_with_torch_fp32"]["onnx_fp32"]["max_abs_probability_difference"] < PARITY
