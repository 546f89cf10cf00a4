"""A method says what it can do (issue 27, point 1): a new method registered in one place
is served by every command (train, eval, predict, explain, report, list) with no command
code for it; which backbone families it runs on is said by the method, not the backbone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from clipadapt.backbone import create_backbone
from clipadapt.cli.main import app
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import METHODS, Method, build_method, register_method
from clipadapt.methods.mhadapter import MHAdapter
from clipadapt.task import Attribute, TaskSpec

RUNNER = CliRunner()
TASK = TaskSpec((Attribute("class", ("face", "road")),))


@pytest.fixture
def own_registry(monkeypatch):
    """The method registry as it is, given back unchanged after the test (a method the
    test registers leaves no trace in the other tests)."""
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    return METHODS


def write_folder(root: Path, n_train: int = 6, n_test: int = 4) -> Path:
    """root/{train,test}/{face,road}/*.png: 32 px images, a bright disc for faces."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    for split, count in (("train", n_train), ("test", n_test)):
        for k, name in enumerate(("face", "road")):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                disc = np.where((xx - 16) ** 2 + (yy - 16) ** 2 < 80, 230.0, 30.0)
                pixels = disc if k == 0 else rng.uniform(0, 255, (32, 32))
                Image.fromarray(pixels.astype(np.uint8), "L").save(root / split / name / f"{i}.png")
    return root


def test_a_method_registered_in_one_place_is_served_by_every_command(tmp_path, own_registry):
    @register_method("narrow_adapter")  # the whole new method: no command knows its name
    class NarrowAdapter(MHAdapter):
        summary = "CLIP-MHAdapter with a narrow bottleneck (registered by a test)"

    data = write_folder(tmp_path / "data")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "folder", "root": str(data)},
        "method": {"name": "narrow_adapter", "params": {"bottleneck": 8, "heads": 2}},
        "train": {"epochs": 1, "batch_size": 4, "device": "cpu"}}))
    run = tmp_path / "run"

    listed = RUNNER.invoke(app, ["list", "methods"])
    assert listed.exit_code == 0 and "narrow_adapter: CLIP-MHAdapter with a narrow bottleneck" in listed.output
    backbones = RUNNER.invoke(app, ["list", "backbones"])
    assert backbones.exit_code == 0 and "narrow_adapter" in backbones.output.split("siglip:")[1].split("eva:")[0]

    trained = RUNNER.invoke(app, ["train", str(config), "--out", str(run), "--quiet"])
    assert trained.exit_code == 0, trained.output
    assert json.loads((run / "card.json").read_text())["method"] == "narrow_adapter"

    evaluated = RUNNER.invoke(app, ["eval", str(run), "--quiet"])
    assert evaluated.exit_code == 0, evaluated.output

    images = sorted((data / "test" / "face").glob("*.png"))[:2]
    predicted = RUNNER.invoke(app, ["predict", *map(str, images), "-c", str(run), "-o", str(tmp_path / "p.csv"),
                                    "--device", "cpu", "--quiet"])
    assert predicted.exit_code == 0, predicted.output
    assert len((tmp_path / "p.csv").read_text().strip().splitlines()) == 1 + len(images)

    # its attention maps come from the class it extends: explain draws them, by kind not name
    explained = RUNNER.invoke(app, ["explain", *map(str, images), "-c", str(run), "-o", str(tmp_path / "maps")])
    assert explained.exit_code == 0, explained.output
    assert (tmp_path / "maps" / f"{images[0].stem}_class_mean.png").is_file()
    reported = RUNNER.invoke(app, ["report", str(run), "--out", str(tmp_path / "r.html"), "--gallery", "2"])
    assert reported.exit_code == 0, reported.output
    assert "narrow_adapter" in (tmp_path / "r.html").read_text()


def test_a_method_says_which_backbone_families_it_refuses_and_why(own_registry):
    @register_method("clip_only")
    class ClipOnly(MHAdapter):
        refused_families = {"siglip": "it reads a [CLS] token, which SigLIP has not"}

    from clipadapt.backbone.families import backbones_by_family

    siglip = create_backbone("clipadapt-micro-map", None)
    with pytest.raises(ClipAdaptError, match=r"clip_only does not run on .*family siglip.*\[CLS\] token.*"
                                             r"Or one of .*mhadapter"):
        build_method("clip_only", siglip, TASK, {})
    assert build_method("clip_only", create_backbone("clipadapt-micro", None), TASK, {}) is not None
    lines = backbones_by_family([METHODS.get(m) for m in METHODS.names()])
    siglip_methods = lines[lines.index(next(l for l in lines if l.startswith("siglip:"))) + 1]
    assert siglip_methods.endswith("refused: clip_only") and "clip_only" not in siglip_methods.split(";")[0]


def test_backbone_fit_is_the_methods_own_check():
    from clipadapt.config import validate_config

    with pytest.raises(ClipAdaptError, match=r"method.params.heads=5 does not divide the embedding width 512"):
        validate_config({"backbone": {"name": "ViT-B-16"}, "method": {"name": "mhadapter", "params": {"heads": 5}}})
    METHODS.get("mhadapter").check_backbone_fit({"heads": 8}, {"embed_dim": 512}, "ViT-B-16")  # fits: no error
    Method.check_backbone_fit({"heads": 5}, {"embed_dim": 512}, "ViT-B-16")  # other methods have no such rule


def test_the_self_trainer_serves_label_free_methods_only(micro_backbone):
    from clipadapt.config import RunConfig
    from clipadapt.engine.selftrain import SelfTrainer

    assert METHODS.get("microclip").training_plan == "self_training"
    assert {METHODS.get(m).training_plan for m in METHODS.names() if m != "microclip"} == {"supervised"}
    with pytest.raises(ClipAdaptError, match="'mhadapter' trains with labels"):
        SelfTrainer(build_method("mhadapter", micro_backbone, TASK, {}), RunConfig(method={"name": "mhadapter"}), progress=False)


def test_a_method_that_declares_an_export_refusal_is_refused_by_export_with_its_reason(tmp_path, own_registry,
                                                                                        micro_backbone):
    from clipadapt.engine.checkpoint import build_card, write_checkpoint
    from clipadapt.methods.zeroshot import ZeroShot

    @register_method("unexportable")  # the reason is the method's own: export knows no method name
    class Unexportable(ZeroShot):
        def export_refusal(self):
            return "its made-up solver has no ONNX operator"

    method = build_method("unexportable", micro_backbone, TASK, {})
    run = tmp_path / "run"
    write_checkpoint(run, method, build_card(method, config={}, seed=0), method.trained_state())
    out = tmp_path / "m.onnx"
    refused = RUNNER.invoke(app, ["export", str(run), "--format", "onnx", "--out", str(out)])
    assert refused.exit_code == 2 and "its made-up solver has no ONNX operator" in refused.output, refused.output
    assert not out.exists()
    assert Method.export_refusal(method) is None and METHODS.get("majority").reads_images is False
    assert all(METHODS.get(m).reads_images for m in METHODS.names() if m != "majority")
