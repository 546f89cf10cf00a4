"""Property-based tests (hypothesis), bounded so the file runs in well under 30 s.

Whatever bytes or values come in, the readers, label maps, metrics and the image
decoder either give a correct answer or raise ClipAdaptError (a message, never a crash
of another kind), and the answers keep their invariants.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.metrics import f1_score

from clipadapt.config import DataConfig, load_config, parse_override
from clipadapt.data.formats import build_splits
from clipadapt.data.images import BadImage, load_image
from clipadapt.data.paths import is_inside, resolve_image_path
from clipadapt.data.tables import decode_text, encode, label_map, normalised
from clipadapt.errors import ClipAdaptError
from clipadapt.metrics.classification import MetricsInputError, multiclass_metrics
from clipadapt.metrics.multilabel import par_metrics
from clipadapt.task import normalise_class_name

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
# database=None: no .hypothesis/ folder in the checkout; each run draws fresh examples
FAST = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

label_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


# ----------------------------------------------------------------------------- manifest parsing
@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_images")
    for i in range(4):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(root / f"{i}.png")
    return root


@FAST
@given(raw=st.binary(max_size=400))
def test_any_bytes_as_a_manifest_give_splits_or_a_message(image_root, raw):
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "train.csv"
        path.write_bytes(raw)
        cfg = DataConfig(format="manifest", root=image_root, train_manifest=path, attributes=["label"], val_fraction=0)
        try:
            splits = build_splits(cfg)
        except ClipAdaptError as exc:
            assert str(exc) and "Traceback" not in str(exc)
            return
        assert len(splits.train) > 0 and all(is_inside(p, image_root) for p in splits.train.paths)


cell = st.one_of(label_text, st.sampled_from(["0.png", "1.png", "2.png", "3.png", "../0.png", "/etc/passwd", ""]))


@FAST
@given(rows=st.lists(st.tuples(cell, label_text), min_size=1, max_size=8), bom=st.booleans(),
       quote=st.booleans())
@example(rows=[("~0", "")], bom=False, quote=False)  # "~user" of no such user: pathlib raised RuntimeError
def test_structured_manifests_read_back_their_labels(image_root, rows, bom, quote):
    table = pd.DataFrame(rows, columns=["img_path", "label"])
    text = table.to_csv(index=False, quoting=1 if quote else 0)
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "train.csv"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
        cfg = DataConfig(format="manifest", root=image_root, train_manifest=path, attributes=["label"], val_fraction=0)
        try:
            data = build_splits(cfg).train
        except ClipAdaptError:
            return
    classes = data.task.attributes[0].classes
    assert list(classes) == sorted(set(classes)) and "" not in classes
    by_image: dict[str, str] = {}
    for image, label in rows:  # what the table said, for the rows that were read
        by_image.setdefault(str(resolve_image_path(image.strip(), image_root, "x")), normalise_class_name(label))
    for p, y in zip(data.paths, data.labels[:, 0]):
        assert is_inside(p, image_root)
        assert (classes[y] if y >= 0 else "") == by_image[str(p)]


@FAST
@given(raw=st.binary(max_size=300), encoding=st.sampled_from(["auto", "latin-1", "utf-16", "cp1252"]))
def test_decoding_table_bytes_gives_text_or_a_message(raw, encoding):
    try:
        text = decode_text(raw, Path("t.csv"), encoding)
    except ClipAdaptError as exc:
        assert "t.csv" in str(exc)
        return
    assert isinstance(text, str) and not text.startswith("\ufeff")


# ----------------------------------------------------------------------------- label maps
@FAST
@given(train=st.lists(label_text, min_size=1, max_size=30), other=st.lists(label_text, max_size=10))
def test_label_map_encodes_and_refuses_like_it_should(train, other):
    column = normalised(pd.Series(train, dtype=object))
    classes = label_map(column)
    assert list(classes) == sorted(set(classes)) and "" not in classes
    codes = encode(column, classes, Path("train.csv"), "a")
    assert [classes[c] if c >= 0 else "" for c in codes] == list(column)
    assert set(codes[codes >= 0]) == set(range(len(classes)))  # every class is used by train
    test = normalised(pd.Series(other, dtype=object))
    if set(test) - set(classes) - {""}:
        with pytest.raises(ClipAdaptError, match="does not occur in the train split"):
            encode(test, classes, Path("test.csv"), "a")
    else:
        assert len(encode(test, classes, Path("test.csv"), "a")) == len(other)


# ----------------------------------------------------------------------------- paths
segment = st.sampled_from(["..", ".", "a", "b", "~", "", "c.png"])


@FAST
@given(parts=st.lists(segment, min_size=1, max_size=6), absolute=st.booleans())
def test_resolved_paths_never_leave_the_root(parts, absolute):
    value = ("/" if absolute else "") + "/".join(parts)
    root = Path("/data/root")
    try:
        path = resolve_image_path(value, root, "m.csv line 2")
    except ClipAdaptError as exc:
        assert "points outside the data root" in str(exc)
        assert not is_inside(os.path.normpath(root / Path(value).expanduser()), root)
        return
    assert is_inside(path, root)


@FAST
@given(text=st.text(max_size=40))
def test_overrides_parse_or_explain(text):
    try:
        keys, _ = parse_override(text)
    except ClipAdaptError as exc:
        assert "--set" in str(exc)
        return
    assert "=" in text and keys == text.split("=", 1)[0].strip().split(".")


# ----------------------------------------------------------------------------- metrics
ids = st.integers(min_value=0, max_value=4)


@FAST
@given(data=st.lists(st.tuples(st.integers(min_value=-1, max_value=4), ids), min_size=1, max_size=40))
def test_multiclass_metrics_agree_with_sklearn_and_ignore_missing_labels(data):
    y_true = np.array([t for t, _ in data])
    y_pred = np.array([p for _, p in data])
    names = list("abcde")
    keep = y_true >= 0
    if not keep.any():
        with pytest.raises(MetricsInputError):
            multiclass_metrics(y_true, y_pred, names)
        return
    m = multiclass_metrics(y_true, y_pred, names)
    assert m["n"] == int(keep.sum())
    assert m["accuracy"] == pytest.approx(float(np.mean(y_true[keep] == y_pred[keep])))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true[keep], y_pred[keep], average="macro", zero_division=0))
    assert 0 <= m["macro_f1"] <= 1 and np.sum(m["confusion_matrix"]) == m["n"]
    order = np.random.default_rng(0).permutation(len(data))  # row order never matters
    assert multiclass_metrics(y_true[order], y_pred[order], names)["macro_f1"] == pytest.approx(m["macro_f1"])
    perfect = multiclass_metrics(y_true, np.where(keep, y_true, 0), names)
    assert perfect["accuracy"] == 1.0 and perfect["macro_f1"] == 1.0


@FAST
@given(n=st.integers(1, 12), a=st.integers(1, 5), seed=st.integers(0, 2**31 - 1),
       threshold=st.floats(0.05, 0.95))
def test_par_metrics_stay_in_range_and_ignored_labels_change_nothing(n, a, seed, threshold):
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, 2, (n, a))
    probs = rng.random((n, a))
    m = par_metrics(labels, probs, threshold)
    for key in ("mA", "accuracy", "precision", "recall", "f1_mean_of_samples", "f1_of_means"):
        assert 0.0 <= m[key] <= 1.0 + 1e-9, key
    # what the model says where nobody labelled must not matter
    flipped = np.where(labels == -1, 1.0 - probs, probs)
    m2 = par_metrics(labels, flipped, threshold)
    assert {k: m[k] for k in ("mA", "accuracy", "precision", "recall")} == \
           {k: m2[k] for k in ("mA", "accuracy", "precision", "recall")}
    truth = np.where(labels == 1, 0.99, 0.01)
    both = (labels == 1).any(0) & (labels == 0).any(0)
    perfect = par_metrics(labels, truth, threshold)
    assert all(row["balanced_accuracy"] == pytest.approx(1.0)
               for row, ok in zip(perfect["per_attribute"], both) if ok)


# ----------------------------------------------------------------------------- image decoding
def _encoded(mode: str, size: tuple[int, int], fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


MODES = {"JPEG": ["RGB", "L", "CMYK"], "PNG": ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"], "GIF": ["P", "L"],
         "BMP": ["RGB", "L", "P"], "TIFF": ["RGB", "RGBA", "CMYK", "L", "I;16", "F"], "WEBP": ["RGB", "RGBA"]}
formats = st.sampled_from(sorted(MODES)).flatmap(lambda f: st.tuples(st.just(f), st.sampled_from(MODES[f])))


@FEW
@given(fmt_mode=formats, width=st.integers(1, 40), height=st.integers(1, 40), seed=st.integers(0, 1000))
def test_every_mode_and_format_decodes_to_rgb_of_its_size(tmp_path, fmt_mode, width, height, seed):
    fmt, mode = fmt_mode
    if mode == "I;16":
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(seed).integers(0, 65535, (height, width), dtype=np.uint16)).save(buf, fmt)
        data = buf.getvalue()
    else:
        data = _encoded(mode, (width, height), fmt, seed)
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (width, height)


@FAST
@given(fmt=st.sampled_from(["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"]), seed=st.integers(0, 10_000),
       cut=st.floats(0.0, 1.0), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6))
def test_damaged_image_bytes_decode_or_are_refused(tmp_path, fmt, seed, cut, flips):
    data = bytearray(_encoded("RGB", (24, 16), fmt, seed))
    for where, value in flips:  # random byte damage, then a random truncation
        data[int(where * (len(data) - 1))] = value
    data = bytes(data[: max(0, int(len(data) * cut))])
    path = tmp_path / "damaged.img"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except BadImage as exc:
        assert exc.reason and str(path) in str(exc)
        return
    assert image.mode == "RGB" and image.size[0] >= 1 and image.size[1] >= 1


@FAST
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_are_never_an_image_crash(tmp_path, raw):
    path = tmp_path / "junk.jpg"
    path.write_bytes(raw)
    try:
        assert load_image(path).mode == "RGB"
    except BadImage as exc:
        assert exc.reason


def test_a_home_of_an_unknown_user_is_taken_as_written(tmp_path):
    # a table cell or a config path "~name/..." of no such user: a path like any other, no traceback
    assert resolve_image_path("~nosuchuser0/a.png", tmp_path, "x") == tmp_path / "~nosuchuser0" / "a.png"
    config = tmp_path / "run.yaml"
    config.write_text("data:\n  format: folder\n  root: ~nosuchuser0/data\n")
    assert Path(load_config(config).data.root) == (tmp_path / "~nosuchuser0" / "data").resolve()
