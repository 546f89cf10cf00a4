"""The synthetic fine-grained birds: class list and descriptions, determinism, the folder
layout (read back by the real folder reader), the idempotent writer, and that the class
cues are local - learnable from pixels but not from the image's global colour make-up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from clipadapt.config import DataConfig
from clipadapt.data.folder import read_folder
from clipadapt.synthetic.finegrained import (
    FINEGRAINED_CLASSES,
    FINEGRAINED_DESCRIPTIONS,
    render_bird,
    render_specimen,
    write_finegrained_dataset,
)
from clipadapt.synthetic.finegrained_parts import RED, Traits
from clipadapt.errors import ClipAdaptError


def _pngs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


# ----------------------------------------------------------------------------- classes
def test_class_names_and_descriptions():
    assert 8 <= len(FINEGRAINED_CLASSES) <= 10
    assert len(set(FINEGRAINED_CLASSES)) == len(FINEGRAINED_CLASSES)
    # the folder reader sorts class folders: the same order keeps label indices aligned
    assert list(FINEGRAINED_CLASSES) == sorted(FINEGRAINED_CLASSES)
    for c in FINEGRAINED_CLASSES:
        assert c == c.strip().lower() and "  " not in c and all(w.isalpha() for w in c.split(" "))
    assert list(FINEGRAINED_DESCRIPTIONS) == list(FINEGRAINED_CLASSES)
    seen = set()
    for c, sentences in FINEGRAINED_DESCRIPTIONS.items():
        assert 3 <= len(sentences) <= 5
        assert all(isinstance(s, str) and len(s.split()) >= 6 for s in sentences)
        assert not seen & set(sentences), f"{c} shares a sentence with another class"
        seen |= set(sentences)


# ----------------------------------------------------------------------------- rendering
def test_render_is_deterministic_and_seed_dependent():
    cls = FINEGRAINED_CLASSES[3]
    a = render_specimen(cls, np.random.default_rng(7))
    b = render_specimen(cls, np.random.default_rng(7))
    c = render_specimen(cls, np.random.default_rng(8))
    assert a.mode == "RGB" and a.size == (96, 96)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    small = render_specimen(cls, np.random.default_rng(7), size=48)
    assert small.size == (48, 48) and small.mode == "RGB"


def test_a_made_up_bird_is_drawn_by_the_same_painter_as_a_class():
    """render_bird takes any Traits (the pretraining world of made-up birds): a class's own
    traits give that class's picture, and a red throat on a wren's bill changes the bird."""
    from clipadapt.synthetic.finegrained import _TRAITS

    wren = _TRAITS["long billed wren"]
    assert render_bird(wren, np.random.default_rng(3)).tobytes() == \
        render_specimen("long billed wren", np.random.default_rng(3)).tobytes()
    marked = Traits(beak=wren.beak, throat=RED)
    assert render_bird(marked, np.random.default_rng(3)).tobytes() != render_bird(wren, np.random.default_rng(3)).tobytes()
    with pytest.raises(ValueError, match="size"):
        render_bird(marked, np.random.default_rng(0), size=16)


def test_render_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown class"):
        render_specimen("blue jay", np.random.default_rng(0))
    with pytest.raises(ValueError, match="size"):
        render_specimen(FINEGRAINED_CLASSES[0], np.random.default_rng(0), size=16)


def test_images_vary_within_a_class():
    """Same class, different draws: the pictures differ a lot, not by noise alone."""
    imgs = [np.asarray(render_specimen(FINEGRAINED_CLASSES[0], np.random.default_rng(i)), np.float32) for i in range(6)]
    diffs = [np.abs(imgs[i] - imgs[j]).mean() for i in range(6) for j in range(i + 1, 6)]
    assert min(diffs) > 10  # out of 255: different backdrop, pose, light


# ----------------------------------------------------------------------------- the folder
@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    return write_finegrained_dataset(tmp_path_factory.mktemp("fg") / "birds", n_train_per_class=3,
                                     n_test_per_class=2, seed=1, image_size=32)


def test_folder_layout(small_root: Path):
    names = (small_root / "classnames.txt").read_text().splitlines()
    assert names == list(FINEGRAINED_CLASSES)
    assert json.loads((small_root / "descriptions.json").read_text()) == FINEGRAINED_DESCRIPTIONS
    for split, n in (("train", 3), ("test", 2)):
        assert sorted(p.name for p in (small_root / split).iterdir()) == sorted(names)
        for c in names:
            files = sorted((small_root / split / c).glob("*.png"))
            assert len(files) == n
            with Image.open(files[0]) as im:
                assert im.size == (32, 32) and im.mode == "RGB"
    marker = json.loads((small_root / "synthetic.json").read_text())
    assert marker["complete"] is True and marker["seed"] == 1 and marker["n_train_per_class"] == 3


def test_folder_reader_reads_it(small_root: Path):
    train, _, test = read_folder(DataConfig(format="folder", root=small_root))
    assert train.task.attributes[0].classes == FINEGRAINED_CLASSES
    assert len(train.paths) == 3 * len(FINEGRAINED_CLASSES) and len(test.paths) == 2 * len(FINEGRAINED_CLASSES)
    for path, label in zip(train.paths, train.labels[:, 0]):
        assert Path(path).parent.name == FINEGRAINED_CLASSES[label]


def test_writer_is_deterministic_and_idempotent(tmp_path: Path):
    opts = dict(n_train_per_class=2, n_test_per_class=1, seed=3, image_size=32)
    a = write_finegrained_dataset(tmp_path / "a", **opts)
    b = write_finegrained_dataset(tmp_path / "b", **opts)
    assert _pngs(a) == _pngs(b) and len(_pngs(a)) == 3 * len(FINEGRAINED_CLASSES)

    # same options: nothing is re-rendered (an extra file in a class folder survives)
    sentinel = a / "train" / FINEGRAINED_CLASSES[0] / "sentinel.txt"
    sentinel.write_text("x")
    before = _pngs(a)
    assert write_finegrained_dataset(a, **opts) == a
    assert sentinel.exists() and _pngs(a) == before

    # different options: a clean re-render
    write_finegrained_dataset(a, **{**opts, "seed": 4})
    assert not sentinel.exists()
    after = _pngs(a)
    assert set(after) == set(before) and after != before
    assert json.loads((a / "synthetic.json").read_text())["seed"] == 4
    write_finegrained_dataset(a, **{**opts, "n_train_per_class": 1})
    assert len(list((a / "train" / FINEGRAINED_CLASSES[0]).glob("*.png"))) == 1


def test_writer_redoes_unfinished_and_refuses_foreign_folders(tmp_path: Path):
    opts = dict(n_train_per_class=1, n_test_per_class=1, seed=0, image_size=32)
    root = write_finegrained_dataset(tmp_path / "r", **opts)
    marker = json.loads((root / "synthetic.json").read_text())
    (root / "synthetic.json").write_text(json.dumps({**marker, "complete": False}))  # as after a crash
    stray = root / "test" / FINEGRAINED_CLASSES[0] / "stray.png"
    stray.write_bytes(b"")
    write_finegrained_dataset(root, **opts)
    assert not stray.exists() and json.loads((root / "synthetic.json").read_text())["complete"] is True

    foreign = tmp_path / "real"
    (foreign / "train" / "cat").mkdir(parents=True)
    with pytest.raises(ClipAdaptError, match="refusing"):
        write_finegrained_dataset(foreign, **opts)
    assert (foreign / "train" / "cat").is_dir()

    with pytest.raises(ClipAdaptError):
        write_finegrained_dataset(tmp_path / "bad", n_train_per_class=0)


# ----------------------------------------------------------------------------- locality
def _global_colour(x: np.ndarray) -> np.ndarray:
    """Per-image mean colour + an 8-bin histogram per channel: where colours are, lost."""
    flat = x.reshape(len(x), -1, 3)
    hist = [np.stack([np.bincount(v // 32, minlength=8) for v in flat[:, :, ch]]) for ch in range(3)]
    return np.concatenate([flat.mean(1) / 255] + hist, axis=1) / np.r_[np.ones(3), np.full(24, flat.shape[1])]


def _pixels(x: np.ndarray, side: int = 24) -> np.ndarray:
    """Downsampled pixels, each image standardised (removes exposure and colour cast)."""
    small = np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.BILINEAR)) for im in x])
    small = small.astype(np.float32)
    return (small - small.mean((1, 2), keepdims=True)) / (small.std((1, 2), keepdims=True) + 10)


def _accuracy(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> float:
    mu, sd = train.mean(0), train.std(0) + 1e-6
    with threadpool_limits(1):  # a tiny problem: BLAS threads only add contention
        model = LogisticRegression(C=0.01, max_iter=500).fit((train - mu) / sd, y_train)
    return float(model.score((test - mu) / sd, y_test))


def test_cues_are_local_not_global_colour():
    """A linear model on 24x24 pixels learns the classes well above chance; the same model
    on global colour statistics stays near chance, so the class is not in how much of
    each colour an image holds but in small marks at particular places on the bird."""
    n_train, n_test = 40, 30

    def split(split_id: int, n: int):
        images = [np.asarray(render_specimen(c, np.random.default_rng([11, split_id, k, i])))
                  for k, c in enumerate(FINEGRAINED_CLASSES) for i in range(n)]
        return np.stack(images), np.repeat(np.arange(len(FINEGRAINED_CLASSES)), n)

    (x_tr, y_tr), (x_te, y_te) = split(0, n_train), split(1, n_test)
    chance = 1 / len(FINEGRAINED_CLASSES)

    acc_global = _accuracy(_global_colour(x_tr), y_tr, _global_colour(x_te), y_te)
    px_tr, px_te = _pixels(x_tr), _pixels(x_te)
    # birds face either way at random, so mirrored training copies keep their labels
    px_tr, y_px = np.concatenate([px_tr, px_tr[:, :, ::-1]]), np.concatenate([y_tr, y_tr])
    acc_pixels = _accuracy(px_tr.reshape(len(px_tr), -1), y_px, px_te.reshape(len(px_te), -1), y_te)

    assert acc_pixels > 2.5 * chance, (acc_pixels, acc_global)
    assert acc_global < 2.0 * chance, (acc_pixels, acc_global)
    assert acc_pixels - acc_global > 0.15, (acc_pixels, acc_global)


def test_species_tones_put_the_class_in_the_body_colour():
    """species_tones=True paints each class's body in its own colour (what the unsupervised
    demo needs: image structure no description names). Colour statistics of the image
    centre, where the bird sits, then tell the classes apart far better than with the
    shared palette."""
    def split(split_id: int, n: int, tones: bool):
        images = [np.asarray(render_specimen(c, np.random.default_rng([12, split_id, k, i]), 48, species_tones=tones))
                  for k, c in enumerate(FINEGRAINED_CLASSES) for i in range(n)]
        centre = np.stack(images)[:, 12:36, 12:36]
        return _global_colour(centre), np.repeat(np.arange(len(FINEGRAINED_CLASSES)), n)

    acc = {}
    for tones in (False, True):
        (x_tr, y_tr), (x_te, y_te) = split(0, 30, tones), split(1, 20, tones)
        acc[tones] = _accuracy(x_tr, y_tr, x_te, y_te)
    assert acc[True] > 2.5 / len(FINEGRAINED_CLASSES) and acc[True] > acc[False] + 0.12, acc  # measured 0.37, 0.155


def test_writer_records_species_tones(tmp_path: Path):
    opts = dict(n_train_per_class=1, n_test_per_class=1, seed=0, image_size=32)
    plain = _pngs(write_finegrained_dataset(tmp_path / "a", **opts))
    root = write_finegrained_dataset(tmp_path / "a", **opts, species_tones=True)
    assert json.loads((root / "synthetic.json").read_text())["species_tones"] is True
    assert set(_pngs(root)) == set(plain) and _pngs(root) != plain  # re-rendered, same files
    with pytest.raises(ClipAdaptError, match="species_tones must be true or false"):
        write_finegrained_dataset(tmp_path / "a", **opts, species_tones="no")
    assert _pngs(root) and json.loads((root / "synthetic.json").read_text())["species_tones"] is True  # kept
