"""Importing the PromptPAR authors' checkpoint layout: a file built here with random
tensors in their format imports, and the imported model's probabilities equal a
step-by-step re-computation of the authors' inference (tests/promptpar_reference.py),
on tensors and on image FILES through `clipadapt predict`, for their preprocessing,
their part regions on 16- and 14-wide grids, and a vis_depth deeper than the backbone."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.engine.checkpoint import load_run
from clipadapt.errors import ClipAdaptError
from clipadapt.importers.promptpar import import_promptpar_checkpoint
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec
from promptpar_reference import (HEADS, authors_file as write_authors_file, register_grid_model, their_pixels,
                                 their_probabilities)

SENTENCES = ["A pedestrian wearing a hat", "A pedestrian carrying a backpack", "A woman or girl"]
PER_GROUP, DEPTH = 3, 3
README = Path(__file__).resolve().parents[1] / "README.md"


def task() -> TaskSpec:
    return TaskSpec(tuple(Attribute(f"a{i}", BINARY_CLASSES, template=s) for i, s in enumerate(SENTENCES)), multilabel=True)


def authors_file(tmp_path, visual_key="visual_embed", seed=0):
    """A checkpoint in the authors' layout around clipadapt-tiny's geometry (8 x 8 patches)."""
    path = tmp_path / "ckpt.pth"
    return path, write_authors_file(path, "clipadapt-tiny", SENTENCES, PER_GROUP, DEPTH, visual_key, seed)


@pytest.mark.parametrize("visual_key", ["visual_embed", "vis_embed"])
def test_imported_model_equals_the_authors_inference(tmp_path, visual_key):
    path, vit = authors_file(tmp_path, visual_key)
    run = import_promptpar_checkpoint(path, task(), tmp_path / "run", backbone_name="clipadapt-tiny",
                                      fusion_heads=HEADS)
    method, card = load_run(run)
    assert card["params"]["text_prompts"] == 0 and card["params"]["token_norm"] is False
    assert card["params"]["global_prompts"] == PER_GROUP and card["params"]["prompt_depth"] == DEPTH
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = torch.stack([torch.softmax(lg, -1)[:, 1] for lg in method.forward_images(images)], 1)
    theirs = their_probabilities(vit, "clipadapt-tiny", SENTENCES, images, PER_GROUP)
    assert ours.shape == (3, 3)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)
    assert 0.05 < float(ours.std()) # not a degenerate constant


# --------------------------------------------------------------------------- image files
def pedestrian_files(folder: Path, seed: int = 3) -> list[Path]:
    """Noise crops: 256 x 128 (their PA100K-like shape) as PNG, a tall JPEG and a
    224 x 224 PNG. The JPEG stays under four times the tiny models' input, as every crop does
    for a 224-px model, so predict's draft decoding (large JPEGs only) does not apply."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for name, (h, w) in [("tall.png", (256, 128)), ("tall.jpg", (200, 100)), ("square.png", (224, 224))]:
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name, quality=95) if name.endswith(".jpg") else \
            Image.fromarray(pixels).save(folder / name)
        files.append(folder / name)
    return files


def import_and_predict(tmp_path: Path, ckpt: Path, model: str, preprocess: str | None) -> tuple[pd.DataFrame, str]:
    """The README's two commands: import-promptpar, then predict (at the authors' threshold, which
    the imported run keeps)."""
    attrs = tmp_path / "attrs.yaml"
    attrs.write_text("\n".join(f"{a.name}: {a.sentence}" for a in task().attributes) + "\n")
    run, out = tmp_path / f"run-{preprocess}", tmp_path / f"pred-{preprocess}.csv"
    runner = CliRunner()
    extra = ["--preprocess", preprocess] if preprocess else []
    done = runner.invoke(app, ["import-promptpar", str(ckpt), "--attributes", str(attrs), "--out", str(run),
                               "--backbone", model, "--fusion-heads", str(HEADS), *extra])
    assert done.exit_code == 0, done.output
    said = done.output
    done = runner.invoke(app, ["predict", str(tmp_path / "crops"), "--checkpoint", str(run),
                               "--out", str(out), "--quiet"])
    assert done.exit_code == 0, done.output
    return pd.read_csv(out), said


@pytest.fixture(scope="module")
def grid_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    # 16 x 16 patches (ViT-L/14 at 224) and 14 x 14 (ViT-B/16 at 224), 2 blocks each
    return {16: register_grid_model(folder, "pp-grid16", 64, 4), 14: register_grid_model(folder, "pp-grid14", 56, 4)}


@pytest.mark.parametrize("grid", [16, 14])
@pytest.mark.parametrize("preprocess", [None, "letterbox"])
def test_predict_on_image_files_gives_the_authors_probabilities(tmp_path, grid_models, grid, preprocess):
    """Whole path: files -> decode -> their preprocessing -> their regions -> CSV. The
    14-wide grid carries prompts for 4 layers on 2 blocks (their vis_depth 24 on B/16)."""
    model = grid_models[grid]
    ckpt = tmp_path / "ckpt.pth"
    vit = write_authors_file(ckpt, model, SENTENCES, PER_GROUP, depth=4 if grid == 14 else 2, seed=grid)
    files = pedestrian_files(tmp_path / "crops")
    table, said = import_and_predict(tmp_path, ckpt, model, preprocess)
    table["file"] = [Path(p).name for p in table["path"]]
    ours = torch.tensor(table.set_index("file").loc[[f.name for f in files], [f"a{i}:p" for i in range(3)]].to_numpy())
    size = 64 if grid == 16 else 56
    theirs = their_probabilities(vit, model, SENTENCES, their_pixels(files, size, pad_first=preprocess == "letterbox"),
                                 PER_GROUP)
    assert (ours - theirs.double()).abs().max() < 1e-4, (ours, theirs)
    # the comparison can fail: the other preprocessing gives other numbers on the tall crops
    other = their_probabilities(vit, model, SENTENCES, their_pixels(files, size, pad_first=preprocess != "letterbox"),
                                PER_GROUP)
    assert (ours[:2] - other[:2].double()).abs().max() > 1e-3
    card = json.loads((tmp_path / f"run-{preprocess}" / "card.json").read_text())
    assert card["backbone"]["preprocess"] == (preprocess or "resize")
    assert card["backbone"]["interpolation"] == "bilinear" and card["backbone"]["normalise"] == "half"
    assert card["params"]["part_regions"] == "authors"
    assert set(card["thresholds"]["values"].values()) == {0.45}  # the authors' decision threshold, kept
    for i in range(3):
        assert (table[f"a{i}"] == (table[f"a{i}:p"] > 0.45)).all()
    assert "bilinear" in card["preprocessing"]["test"]
    if grid == 14:
        assert card["params"]["prompt_depth"] == 2 and "using the first 2" in said


def test_authors_regions_differ_from_strips_on_a_14_wide_grid(tmp_path, grid_models):
    """Why the import keeps their regions: clipadapt's strips change the probabilities."""
    model = grid_models[14]
    ckpt = tmp_path / "ckpt.pth"
    vit = write_authors_file(ckpt, model, SENTENCES, PER_GROUP, depth=2, seed=5)
    run = import_promptpar_checkpoint(ckpt, task(), tmp_path / "run", backbone_name=model, fusion_heads=HEADS)
    card = json.loads((run / "card.json").read_text())
    card["params"]["part_regions"] = "strips"
    (run / "card.json").write_text(json.dumps(card))
    method, _ = load_run(run)
    images = torch.randn(4, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        strips = torch.stack([torch.softmax(lg, -1)[:, 1] for lg in method.forward_images(images)], 1)
    theirs = their_probabilities(vit, model, SENTENCES, images, PER_GROUP)
    assert (strips - theirs).abs().max() > 1e-3


def test_readme_states_what_the_import_reproduces():
    """The README's claim names what is compared, the bound, and this test file."""
    text = README.read_text(encoding="utf-8")
    claim = re.search(r"clipadapt import-promptpar.*?(?=\n\n)", text, flags=re.S)
    assert claim, "README has no import-promptpar paragraph"
    said = " ".join(claim.group(0).split())
    for needed in ("image files", "within 1e-4", "ViT-L/14 and ViT-B/16", "--preprocess letterbox",
                   "tests/test_import_promptpar.py", "straight resize to 224x224, bilinear"):
        assert needed in said, needed
    assert "exactly" not in said  # the claim states its bound and its scope


@pytest.mark.skipif(os.environ.get("CLIPADAPT_FULL_PARITY") != "1",
                    reason="full-size ViT-L/14 and ViT-B/16 parity: set CLIPADAPT_FULL_PARITY=1 (minutes on a CPU)")
@pytest.mark.parametrize("model, depth", [("ViT-L-14-quickgelu", 24), ("ViT-B-16-quickgelu", 24)])
def test_full_size_parity_on_image_files(tmp_path, model, depth):
    """The released sizes with random weights: their vis_depth 24, 10 prompts per group,
    the ViT-B fusion block (768 wide, 12 heads), both preprocessing choices."""
    import promptpar_reference as ref

    ckpt = tmp_path / "ckpt.pth"
    vit = write_authors_file(ckpt, model, SENTENCES, 10, depth=depth, fusion=768)
    files = pedestrian_files(tmp_path / "crops")
    worst = {}
    for preprocess in ("resize", "letterbox"):
        run = import_promptpar_checkpoint(ckpt, task(), tmp_path / f"run-{preprocess}", backbone_name=model,
                                          fusion_heads=12, preprocess=preprocess, notify=print)
        done = CliRunner().invoke(app, ["predict", str(tmp_path / "crops"), "--checkpoint", str(run), "--out",
                                        str(tmp_path / f"{preprocess}.csv"), "--quiet"])
        assert done.exit_code == 0, done.output
        table = pd.read_csv(tmp_path / f"{preprocess}.csv")
        table["file"] = [Path(p).name for p in table["path"]]
        ours = torch.tensor(table.set_index("file").loc[[f.name for f in files], [f"a{i}:p" for i in range(3)]].to_numpy())
        theirs = ref.their_probabilities(vit, model, SENTENCES, their_pixels(files, 224, preprocess == "letterbox"), 10,
                                         heads=12)
        diff = (ours - theirs.double()).abs()
        worst[preprocess] = {"256x128": float(diff[:2].max()), "224x224": float(diff[2].max())}
    print(f"{model}: max abs probability difference {worst}")
    assert max(v for d in worst.values() for v in d.values()) < 1e-4, worst


def test_unknown_key_wrong_attribute_count_and_foreign_files_are_refused(tmp_path):
    path, vit = authors_file(tmp_path)
    two = TaskSpec(task().attributes[:2], multilabel=True)
    with pytest.raises(ClipAdaptError, match="3 attributes|weight_layer.0..2"):
        import_promptpar_checkpoint(path, two, tmp_path / "r1", backbone_name="clipadapt-tiny")
    vit["model_state_dict"]["linear_layer.weight"] = torch.zeros(3, 3)
    torch.save(vit, tmp_path / "odd.pth")
    with pytest.raises(ClipAdaptError, match="linear_layer.weight"):
        import_promptpar_checkpoint(tmp_path / "odd.pth", task(), tmp_path / "r2", backbone_name="clipadapt-tiny")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(ClipAdaptError, match="not a PromptPAR checkpoint"):
        import_promptpar_checkpoint(tmp_path / "other.pth", task(), tmp_path / "r3", backbone_name="clipadapt-tiny")
    del vit["model_state_dict"]["linear_layer.weight"]
    vit["ViT_model"]["visual.ln_post.weight"] = torch.ones(7)  # a CLIP tensor of the wrong shape
    torch.save(vit, tmp_path / "bad.pth")
    with pytest.raises(ClipAdaptError, match="visual.ln_post.weight"):
        import_promptpar_checkpoint(tmp_path / "bad.pth", task(), tmp_path / "r4", backbone_name="clipadapt-tiny")


def test_run_folder_is_self_contained_and_not_overwritten(tmp_path):
    path, _ = authors_file(tmp_path)
    run = import_promptpar_checkpoint(path, task(), tmp_path / "run", backbone_name="clipadapt-tiny")
    card = json.loads((run / "card.json").read_text())
    assert card["backbone"]["pretrained"].endswith("backbone.safetensors") and (run / "backbone.safetensors").is_file()
    assert card["backbone"]["preprocess"] == "resize" and card["task"]["multilabel"] is True
    with pytest.raises(ClipAdaptError, match="already holds a run"):
        import_promptpar_checkpoint(path, task(), run, backbone_name="clipadapt-tiny")


def test_cli_imports_with_an_attribute_file(tmp_path):
    path, _ = authors_file(tmp_path)
    attrs = tmp_path / "attrs.yaml"
    attrs.write_text("\n".join(f"{a.name}: {a.sentence}" for a in task().attributes) + "\n")
    runner = CliRunner()
    result = runner.invoke(app, ["import-promptpar", str(path), "--attributes", str(attrs), "--out", str(tmp_path / "run"),
                                 "--backbone", "clipadapt-tiny", "--fusion-heads", str(HEADS)])
    assert result.exit_code == 0, result.output
    method, _ = load_run(tmp_path / "run")
    assert [a.sentence for a in method.task.attributes] == SENTENCES
    both = runner.invoke(app, ["import-promptpar", str(path), "--attributes", str(attrs), "--dataset", "pa100k",
                               "--out", str(tmp_path / "r2")])
    assert both.exit_code == 2 and "exactly one of --attributes" in both.output


def test_predict_runs_an_imported_promptpar_model_with_a_threshold(tmp_path):
    """Image-path methods go through forward_images in `predict` (not the frozen features)."""
    from PIL import Image
    path, vit = authors_file(tmp_path)
    run = import_promptpar_checkpoint(path, task(), tmp_path / "run", backbone_name="clipadapt-tiny",
                                      fusion_heads=HEADS)
    crops = tmp_path / "crops"
    crops.mkdir()
    rng = torch.Generator().manual_seed(3)
    for i in range(3):
        pixels = (torch.rand(96, 48, 3, generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(crops / f"p{i}.png")
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(app, ["predict", str(crops), "--checkpoint", str(run), "--out", str(out),
                                      "--threshold", "0.45", "--quiet"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns[3:]) == ["a0", "a0:p", "a1", "a1:p", "a2", "a2:p"]
    for name in ("a0", "a1", "a2"):
        assert ((table[f"{name}:p"] > 0.45).astype(int) == table[name]).all()
        assert table[f"{name}:p"].between(0, 1).all()
