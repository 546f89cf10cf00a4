"""The Python API's run (issue 28): `clipadapt.load(...).predict` gives `clipadapt predict`'s
numbers whether the images come as files, PIL images or arrays; an exported ONNX file gives
the folder's table; 8 threads at once give the sequential answer; bad input raises the
CLI's message and writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import clipadapt
from clipadapt.cli.main import app

COLOURS = {"red": (200, 40, 40), "blue": (40, 40, 200)}


def make_pets(root: Path, per_class: dict[str, int]) -> None:
    """root/<split>/<class>/*.png: noisy red and blue images of odd sizes (the transform
    resizes and crops them)."""
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(np.array(colour) + rng.normal(0, 45, (40 + 3 * i, 52, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A calibrated linear probe on the embedded tiny CLIP, trained through the API from a dict."""
    base = tmp_path_factory.mktemp("api")
    make_pets(base / "pets", {"train": 10, "test": 4})
    # a grayscale and a transparent test image: every route must turn them into the same RGB
    gray = Image.open(base / "pets/test/red/0.png").convert("L")
    gray.save(base / "pets/test/red/gray.png")
    rgba = Image.open(base / "pets/test/blue/0.png").convert("RGBA")
    rgba.putalpha(128)
    rgba.save(base / "pets/test/blue/alpha.png")
    config = {"data": {"format": "folder", "root": str(base / "pets"), "val_fraction": 0.3},
              "method": {"name": "linear_probe"}, "features": {"dir": str(base / "cache")}}
    run = clipadapt.train(config, base / "runs/pets", {"train.calibrate": "temperature"}, train__epochs=4,
                          device="cpu")
    return base, run


def test_the_trained_run_is_calibrated_and_beats_chance(trained):
    _, run = trained
    temperatures = run.card.calibration["temperatures"]
    assert temperatures and all(abs(t - 1.0) > 1e-3 for t in temperatures.values())  # the threads test needs one
    assert run.metrics["accuracy"] > 0.75  # two well separated colours; chance is 0.5
    assert run.classes == {"class": ["blue", "red"]}


def test_files_pil_images_and_arrays_give_clipadapt_predicts_probabilities(trained, tmp_path):
    base, run = trained
    files = sorted((base / "pets/test").rglob("*.png"))
    cli = CliRunner().invoke(app, ["predict", str(base / "pets/test"), "--checkpoint", str(run.path),
                                   "--out", str(tmp_path / "cli.csv"), "--quiet"])
    assert cli.exit_code == 0, cli.output
    command = pd.read_csv(tmp_path / "cli.csv")
    assert command["path"].tolist() == [str(f) for f in files]  # the folder is listed in the same order

    by_path = run.predict(base / "pets/test")
    by_pil = run.predict([Image.open(f) for f in files])
    by_array = run.predict([np.asarray(Image.open(f).convert("RGB")) for f in files])
    columns = ["class:p(blue)", "class:p(red)"]
    assert list(by_path.columns) == list(command.columns) == ["path", "ok", "error", "class", *columns,
                                                              "class:entropy"]
    assert by_path["path"].tolist() == command["path"].tolist()
    assert by_pil["path"].isna().all() and list(by_pil.index) == list(range(len(files)))
    expected = command[columns].to_numpy(float)
    assert np.abs(by_path[columns].to_numpy(float) - expected).max() <= 1e-6
    assert np.abs(by_pil[columns].to_numpy(float) - expected).max() <= 1e-6
    # the alpha image's array drops the matte the file route adds: it is compared on the others
    opaque = np.array(["alpha" not in f.name for f in files])
    assert np.abs(by_array[columns].to_numpy(float)[opaque] - expected[opaque]).max() <= 1e-6
    assert by_pil["class"].tolist() == by_path["class"].tolist() == command["class"].tolist()
    # predict_proba holds the same numbers, in the classes' order
    proba = run.predict_proba(files)["class"]
    assert proba.shape == (len(files), 2) and np.abs(proba - expected).max() <= 1e-6


def test_an_onnx_file_gives_the_run_folders_table(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    base, run = trained
    onnx_file = run.export(tmp_path / "pets.onnx")
    exported = clipadapt.load(onnx_file)
    assert exported.module is None and exported.classes == run.classes and exported.card.method == "linear_probe"
    files = sorted((base / "pets/test").rglob("*.png"))
    images = [*files[:3], Image.open(files[3]), np.asarray(Image.open(files[4]).convert("RGB"))]
    from_folder, from_file = run.predict(images), exported.predict(images)
    columns = ["class:p(blue)", "class:p(red)"]
    assert list(from_file.columns) == list(from_folder.columns)
    assert np.abs(from_file[columns].to_numpy(float) - from_folder[columns].to_numpy(float)).max() <= 1e-5
    assert from_file["class"].tolist() == from_folder["class"].tolist()
    with pytest.raises(clipadapt.ClipAdaptError, match="ONNX file.*run folder"):
        exported.embed(files[:1])

    # the same interface without torch: an exported file is predicted with onnxruntime alone
    script = ("import sys\n"
              "class NoTorch:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name.split('.')[0] in ('torch', 'torchvision', 'open_clip', 'timm'):\n"
              "            raise ImportError('torch is blocked in this test: ' + name)\n"
              "sys.meta_path.insert(0, NoTorch())\n"
              "import clipadapt, json\n"
              f"table = clipadapt.load({str(onnx_file)!r}).predict({[str(f) for f in files]!r})\n"
              "print(json.dumps(table[['class:p(blue)', 'class:p(red)']].to_numpy().tolist()))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    no_torch = np.array(json.loads(done.stdout))
    assert np.abs(no_torch - run.predict(files)[columns].to_numpy(float)).max() <= 1e-5


def test_predict_from_8_threads_at_once_equals_the_sequential_answer(trained):
    base, run = trained
    files = sorted((base / "pets/test").rglob("*.png"))
    images = [*files[:4], *(Image.open(f) for f in files[4:])]
    expected = run.predict(images)
    barrier = threading.Barrier(8)

    def work(_):
        barrier.wait()
        return [run.predict(images) for _ in range(3)]

    with ThreadPoolExecutor(8) as pool:
        answers = [table for tables in pool.map(work, range(8)) for table in tables]
    different = [i for i, table in enumerate(answers) if not table.equals(expected)]
    assert not different, f"{len(different)} of {len(answers)} concurrent predictions differ from the sequential one"


def test_embed_is_the_backbones_normalised_image_embedding(trained):
    import torch

    base, run = trained
    files = sorted((base / "pets/test/red").glob("*.png"))[:3]
    got = run.embed(files)
    model, preprocess, _ = clipadapt.create_backbone("clipadapt-tiny")
    with torch.inference_mode():
        raw = model.forward_features(torch.stack([preprocess(Image.open(f).convert("RGB")) for f in files])).embedding
    want = torch.nn.functional.normalize(raw, dim=-1).numpy()
    assert got.shape == (3, model.embed_dim) and np.abs(got - want).max() <= 1e-6
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_evaluate_scores_the_runs_test_split_as_the_card_says(trained, tmp_path):
    _, run = trained
    metrics = clipadapt.evaluate(run, out=tmp_path / "eval")
    assert metrics["mean"]["accuracy"] == pytest.approx(run.metrics["accuracy"], abs=1e-9)
    assert (tmp_path / "eval/metrics.json").is_file()


def cli_error(*args: str) -> str:
    """The one-line message `clipadapt ARGS` prints (without 'error: ')."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("error: "))
    return line[len("error: "):]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def test_bad_input_raises_the_clis_message_and_writes_nothing(trained, tmp_path, monkeypatch):
    base, run = trained
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "probe.yaml"
    config.write_text(f"data: {{format: folder, root: {base / 'pets'}}}\nmethod: linear_probe\n")
    (tmp_path / "notes.jpg").write_text("<html>not a picture</html>")
    before = files_under(tmp_path) | files_under(base)

    # an unknown key, as a file setting and as an override
    with pytest.raises(clipadapt.ClipAdaptError) as raised:
        clipadapt.train(config, tmp_path / "out", ["train.epoch=3"])
    assert str(raised.value) == cli_error("train", str(config), "--out", str(tmp_path / "out"), "--set", "train.epoch=3")
    assert "Did you mean 'epochs'" in str(raised.value)
    with pytest.raises(clipadapt.ClipAdaptError, match="train.epoch.*Did you mean 'epochs'"):
        clipadapt.train({"data": {"format": "folder", "root": str(base / "pets")}}, tmp_path / "out", train__epoch=3)
    # a data folder that is not there
    with pytest.raises(clipadapt.ClipAdaptError) as raised:
        clipadapt.train(config, tmp_path / "out", {"data.root": str(tmp_path / "pest")})
    assert str(raised.value) == cli_error("train", str(config), "--out", str(tmp_path / "out"),
                                          "--set", f"data.root={tmp_path / 'pest'}")
    # a run folder that is not there
    with pytest.raises(clipadapt.ClipAdaptError) as raised:
        clipadapt.load(base / "runs/pest")
    assert str(raised.value) == cli_error("predict", str(base / "pets/test"), "--checkpoint", str(base / "runs/pest"))
    assert "Did you mean" in str(raised.value) and "pets" in str(raised.value)
    # a file that is not an image, and images that are not there
    with pytest.raises(clipadapt.ClipAdaptError) as raised:
        run.predict(["notes.jpg"])
    assert cli_error("predict", "notes.jpg", "--checkpoint", str(run.path), "--on-bad-image", "fail") == str(raised.value)
    assert "not an image file" in str(raised.value)
    with pytest.raises(clipadapt.ClipAdaptError) as raised:
        run.predict(tmp_path / "photos")
    assert str(raised.value) == cli_error("predict", str(tmp_path / "photos"), "--checkpoint", str(run.path))
    # arrays of the wrong shape or type, and things that are no image at all
    with pytest.raises(clipadapt.ClipAdaptError, match=r"H x W x 3 uint8.*\(3, 32, 32\).*transpose\(1, 2, 0\)"):
        run.predict(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(clipadapt.ClipAdaptError, match=r"images\[1\].*float32.*astype\('uint8'\)"):
        run.predict([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(clipadapt.ClipAdaptError, match="images is a int"):
        run.predict(3)
    with pytest.raises(clipadapt.ClipAdaptError, match="No images given"):
        run.predict([])
    assert files_under(tmp_path) | files_under(base) == before  # nothing written, nothing lost


def test_skip_keeps_the_good_images_and_says_why_for_the_bad(trained, tmp_path):
    base, run = trained
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    good = sorted((base / "pets/test/red").glob("*.png"))[0]
    table = run.predict([good, bad, Image.open(good)], on_bad_image="skip")
    assert table["ok"].tolist() == [True, False, True]
    assert "empty file" in table.loc[1, "error"] and table.loc[1, "class"] == ""
    proba = run.predict_proba([good, bad], on_bad_image="skip")["class"]
    assert np.isnan(proba[1]).all() and not np.isnan(proba[0]).any()


def test_warnings_come_as_python_warnings_with_their_category_and_on_the_run(tmp_path):
    """Class names the tiny CLIP never learned: zero-shot cannot tell them apart and sits at
    chance; both reach the caller as categorised warnings and stay on the returned run."""
    make_pets(tmp_path / "pets", {"train": 3, "test": 2})
    for split in ("train", "test"):  # rename the classes to words no caption held
        for old, new in (("red", "qzxv"), ("blue", "wbkj")):
            (tmp_path / "pets" / split / old).rename(tmp_path / "pets" / split / new)
    with pytest.warns(clipadapt.ClassTextWarning, match="cannot tell classes apart.*qzxv") as caught:
        run = clipadapt.train({"data": {"format": "folder", "root": str(tmp_path / "pets")}, "method": "zeroshot",
                               "features": {"cache": "off"}}, tmp_path / "runs/odd")
    categories = {w.category for w in caught}
    assert clipadapt.AtChanceWarning in categories
    assert all(issubclass(c, clipadapt.ClipAdaptWarning) for c in categories if c.__module__.startswith("clipadapt"))
    assert any("cannot tell classes apart" in note for note in run.warnings)
    assert any("no better than chance" in note for note in run.warnings)


def test_create_backbone_encodes_texts_given_as_strings_or_token_ids():
    import torch

    model, _, tokenizer = clipadapt.create_backbone("clipadapt-tiny")
    texts = ["a photo of a bird", "a photo of a red car"]
    by_text, by_tokens = model.encode_text(texts), model.encode_text(tokenizer(texts))
    assert by_text.shape == (2, model.embed_dim) and torch.equal(by_text, by_tokens)
    assert not torch.allclose(by_text[0], by_text[1])


def test_a_manifests_id_and_coordinates_follow_path_as_clipadapt_predict_carries_them(trained, tmp_path):
    base, run = trained
    files = sorted((base / "pets/test").rglob("*.png"))[:4]
    manifest = pd.DataFrame({"img_path": [str(f) for f in files], "uuid": [f"u{i}" for i in range(4)],
                             "lat": [52.1, 52.2, 52.3, 52.4], "lon": [4.1, 4.2, 4.3, 4.4],
                             "city": ["a", "b", "a", "b"]})
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    cli = CliRunner().invoke(app, ["predict", str(tmp_path / "manifest.csv"), "--checkpoint", str(run.path),
                                   "--out", str(tmp_path / "cli.csv"), "--quiet"])
    assert cli.exit_code == 0, cli.output
    command = pd.read_csv(tmp_path / "cli.csv")
    table = run.predict(tmp_path / "manifest.csv")
    assert list(table.columns) == list(command.columns)
    assert list(table.columns[:4]) == ["path", "uuid", "lat", "lon"]
    assert table["uuid"].tolist() == ["u0", "u1", "u2", "u3"] and table["lat"].tolist() == [52.1, 52.2, 52.3, 52.4]
    columns = ["class:p(blue)", "class:p(red)"]
    assert np.abs(table[columns].to_numpy(float) - command[columns].to_numpy(float)).max() <= 1e-6
    # keep= is --keep; an in-memory image beside the manifest has no carried values
    mixed = run.predict([tmp_path / "manifest.csv", Image.open(files[0])], keep="city")
    assert list(mixed.columns[:2]) == ["path", "city"] and mixed["city"].tolist()[:4] == ["a", "b", "a", "b"]
    assert pd.isna(mixed["city"].iloc[4]) and pd.isna(mixed["path"].iloc[4])
    with pytest.raises(clipadapt.ClipAdaptError, match="Did you mean 'city'"):
        run.predict(tmp_path / "manifest.csv", keep="cty")
