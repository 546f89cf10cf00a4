"""format: benchmark: every layout read from a fixture tree under its real file names, the
K-shot subsets equal to what Dassl's generate_fewshot_dataset picks (re-computed here by
the same random calls), base-to-novel relabelling, and the messages for wrong layouts."""

from __future__ import annotations

import io
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipadapt.config import DataConfig
from clipadapt.data.benchmark import LAYOUTS, expected_tree
from clipadapt.data.formats import build_splits
from clipadapt.errors import ClipAdaptError

PER_SPLIT = {"train": 5, "val": 2, "test": 3}  # images per class in each split of a fixture


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 60, 20)).save(buffer, "JPEG")
    return buffer.getvalue()


JPEG = _jpeg()


def put(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(JPEG)


# Split-file sets: (class names as the split file spells them, image path of class c, item n, split s).
SPLIT_SETS = {
    "caltech101": (["accordion", "face", "leopard"],
                   lambda c, n, s: f"{['accordion', 'Faces', 'Leopards'][c]}/image_{n:04d}.jpg"),
    "oxford_pets": (["abyssinian", "american_bulldog", "bengal"],
                    lambda c, n, s: f"{['Abyssinian', 'american_bulldog', 'Bengal'][c]}_{n}.jpg"),
    "stanford_cars": (["2012 Tesla Model S", "2000 AM General Hummer SUV", "2012 BMW M3 coupe"],
                      lambda c, n, s: f"cars_{'test' if s == 'test' else 'train'}/{100 * c + n:05d}.jpg"),
    "oxford_flowers": (["pink primrose", "hard-leaved pocket orchid", "canterbury bells"],
                       lambda c, n, s: f"image_{100 * c + n:05d}.jpg"),
    "food101": (["apple_pie", "baby_back_ribs", "baklava"],
                lambda c, n, s: f"{['apple_pie', 'baby_back_ribs', 'baklava'][c]}/{1000 + n}.jpg"),
    "sun397": (["abbey", "outdoor airport", "indoor church"],
               lambda c, n, s: f"{['a/abbey', 'a/airport/outdoor', 'c/church/indoor'][c]}/sun_{n}.jpg"),
    "dtd": (["banded", "blotchy", "braided"], lambda c, n, s: f"{['banded', 'blotchy', 'braided'][c]}/x_{n:04d}.jpg"),
    "eurosat": (["Annual Crop Land", "Forest", "Highway or Road"],
                lambda c, n, s: f"{['AnnualCrop', 'Forest', 'Highway'][c]}/{['AnnualCrop', 'Forest', 'Highway'][c]}_{n}.jpg"),
    "ucf101": (["Apply_Eye_Makeup", "Apply_Lipstick", "Archery"],
               lambda c, n, s: f"{['Apply_Eye_Makeup', 'Apply_Lipstick', 'Archery'][c]}/v_{c}_g01_c{n:02d}.jpg"),
}
WNIDS = [("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark"),
         ("n01491361", "tiger shark")]
EXPECTED_PROMPT = {  # the first class's prompt: the set's template with the field's spelling
    "caltech101": "a photo of a accordion.", "oxford_pets": "a photo of a abyssinian, a kind of pet.",
    "stanford_cars": "a photo of a 2012 Tesla Model S, a model of car.",
    "oxford_flowers": "a photo of a pink primrose, a kind of flower.", "food101": "a photo of apple pie, a kind of food.",
    "sun397": "a photo of a abbey, a kind of place.", "dtd": "a photo of a banded texture.",
    "eurosat": "a satellite photo of Annual Crop Land.", "ucf101": "a photo of a person doing Apply Eye Makeup.",
    "fgvc_aircraft": "a photo of a 707-320, a kind of aircraft.",
    "cub200": "a photo of a Black footed Albatross, a kind of bird.", "imagenet": "a photo of a tench.",
}


def split_entries(key: str, per_split=PER_SPLIT) -> dict:
    names, path = SPLIT_SETS[key]
    split = {}
    for s, count in per_split.items():
        split[s] = [[path(c, n + 10 * ["train", "val", "test"].index(s), s), c, names[c]]
                    for n in range(count) for c in range(len(names))]
    return split


def write_split_set(base: Path, key: str, split: dict | None = None) -> Path:
    layout = LAYOUTS[key]
    root = base / layout.folder
    split = split or split_entries(key)
    for entries in split.values():
        for relative, _, _ in entries:
            put(root / layout.images / relative)
    root.mkdir(parents=True, exist_ok=True)
    (root / layout.index).write_text(json.dumps(split))
    return root


def write_aircraft(base: Path) -> Path:
    root = base / "fgvc_aircraft"
    variants = ["707-320", "727-200", "A300B4"]
    (root / "images").mkdir(parents=True)
    (root / "variants.txt").write_text("\n".join(variants) + "\n")
    for s, count in PER_SPLIT.items():
        lines = []
        for n in range(count):
            for c, variant in enumerate(variants):
                image_id = f"{1000000 + 1000 * c + 10 * n + ['train', 'val', 'test'].index(s)}"
                put(root / "images" / f"{image_id}.jpg")
                lines.append(f"{image_id} {variant}")
        (root / f"images_variant_{s}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_cub(base: Path) -> Path:
    root = base / "CUB_200_2011"
    folders = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    images, split, labels = [], [], []
    image_id = 0
    for n in range(PER_SPLIT["train"] + PER_SPLIT["test"]):
        for c, folder in enumerate(folders):
            image_id += 1
            relative = f"{folder}/{folder.split('.')[1]}_{n:04d}_{image_id}.jpg"
            put(root / "images" / relative)
            images.append(f"{image_id} {relative}")
            split.append(f"{image_id} {1 if n < PER_SPLIT['train'] else 0}")
            labels.append(f"{image_id} {c + 1}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "classes.txt").write_text("".join(f"{c + 1} {f}\n" for c, f in enumerate(folders)))
    return root


def write_classnames(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "classnames.txt").write_text("".join(f"{w} {name}\n" for w, name in WNIDS))


def write_imagenet(base: Path) -> Path:
    root = base / "imagenet"
    write_classnames(root)
    for s, count in (("train", PER_SPLIT["train"]), ("val", PER_SPLIT["test"])):
        for wnid, _ in WNIDS:
            for n in range(count):
                put(root / "images" / s / wnid / f"{wnid}_{n}.JPEG")
    return root


VARIANT_FOLDERS = {  # ImageNet variant: the class folders it has
    "imagenetv2": ["0", "1", "2", "3"], "imagenet_sketch": [w for w, _ in WNIDS],
    "imagenet_a": [WNIDS[1][0], WNIDS[3][0]], "imagenet_r": [WNIDS[0][0], WNIDS[2][0]],
}


def write_variant(base: Path, key: str) -> Path:
    layout = LAYOUTS[key]
    root = base / layout.folder
    write_classnames(root)
    for folder in VARIANT_FOLDERS[key]:
        for n in range(2):
            put(root / layout.images / folder / f"img_{n}.jpg")
    (root / layout.images / "README.txt").write_text("not a class\n")
    return root


def write_set(base: Path, key: str) -> Path:
    if key in SPLIT_SETS:
        return write_split_set(base, key)
    if key in VARIANT_FOLDERS:
        return write_variant(base, key)
    return {"fgvc_aircraft": write_aircraft, "cub200": write_cub, "imagenet": write_imagenet}[key](base)


def read(root, key, **settings):
    return build_splits(DataConfig(format="benchmark", dataset=key, root=root, val_fraction=0, **settings))


def test_every_layout_is_tested():
    assert set(SPLIT_SETS) | set(VARIANT_FOLDERS) | {"fgvc_aircraft", "cub200", "imagenet"} == set(LAYOUTS)


@pytest.mark.parametrize("key", [k for k in LAYOUTS if k not in VARIANT_FOLDERS])
def test_each_layout_reads_into_one_attribute_with_the_fields_names(tmp_path, key):
    splits = read(write_set(tmp_path, key), key)
    attr = splits.task.attributes[0]
    assert splits.task.names == ["class"] and attr.num_classes in (3, 4)
    if key in SPLIT_SETS:
        assert attr.classes == tuple(name.lower() for name in SPLIT_SETS[key][0])
    assert attr.prompts()[0] == EXPECTED_PROMPT[key]
    per_class = attr.num_classes
    assert len(splits.train) == PER_SPLIT["train"] * per_class
    assert len(splits.test) == PER_SPLIT["test"] * per_class
    has_val = key not in ("imagenet", "cub200")
    assert (splits.val is not None) == has_val
    if has_val:
        assert len(splits.val) == PER_SPLIT["val"] * per_class
    for images in (splits.train, splits.test):
        assert all(p.is_file() for p in images.paths)
        assert sorted(np.bincount(images.labels[:, 0]).tolist()) == [len(images) // per_class] * per_class


def test_imagenet_labels_follow_classnames_txt(tmp_path):
    splits = read(write_imagenet(tmp_path), "imagenet")
    assert splits.task.attributes[0].classes == ("tench", "goldfish", "great white shark", "tiger shark")
    assert [p.parent.name for p in splits.test.paths[::PER_SPLIT["test"]]] == [w for w, _ in WNIDS]
    assert splits.test.labels[::PER_SPLIT["test"], 0].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("key", sorted(VARIANT_FOLDERS))
def test_imagenet_variants_keep_imagenets_label_space(tmp_path, key):
    # as read; by default ImageNet-A / -R keep only the classes they hold (test_cross_dataset_eval.py)
    splits = read(write_variant(tmp_path, key), key, restrict_to_present_classes=False)
    attr = splits.task.attributes[0]
    assert attr.classes == ("tench", "goldfish", "great white shark", "tiger shark")  # all of ImageNet's classes
    folders = VARIANT_FOLDERS[key]
    expected = [int(f) if key == "imagenetv2" else [w for w, _ in WNIDS].index(f) for f in folders]
    assert sorted(set(splits.test.labels[:, 0].tolist())) == sorted(expected)
    for path, label in zip(splits.test.paths, splits.test.labels[:, 0]):
        assert path.parent.name == (str(label) if key == "imagenetv2" else WNIDS[label][0])


def test_root_may_be_the_folder_that_holds_the_set(tmp_path):
    write_set(tmp_path, "eurosat")
    assert len(read(tmp_path, "eurosat").train) == 15


def test_templates_and_class_words_can_be_overridden(tmp_path):
    splits = read(write_set(tmp_path, "oxford_pets"), "oxford_pets", attributes=["breed"],
                  templates={"breed": "a pet photo: {}."}, class_words={"breed": {"Bengal": "bengal cat"}})
    assert splits.task.names == ["breed"]
    assert splits.task.attributes[0].prompts() == ["a pet photo: abyssinian.", "a pet photo: american bulldog.",
                                                   "a pet photo: bengal cat."]


# --- Dassl's few-shot sampling -------------------------------------------------------------

def parity_split() -> dict:
    """Five classes, interleaved so that labels first appear in the order 3, 0, 4, 1, 2; the
    train groups hold 23, 17, 16, 9 and 30 items (label 3 has fewer than 16), val 6, 3, 5, 7, 4."""
    rng = random.Random(99)
    names = ["abyssinian", "american_bulldog", "bengal", "birman", "bombay"]
    first = [3, 0, 4, 1, 2]
    split = {}
    for s, counts in (("train", [23, 17, 16, 9, 30]), ("val", [6, 3, 5, 7, 4]), ("test", [2] * 5)):
        labels = [c for c, n in enumerate(counts) for _ in range(n)]
        for c in first:
            labels.remove(c)
        rng.shuffle(labels)
        split[s] = [[f"{names[c].capitalize()}_{s}_{i}.jpg", c, names[c]] for i, c in enumerate(first + labels)]
    return split


def dassl_reference(split: dict, shots: int, seed: int):
    """What CoOp's data set classes do, step by step: set_random_seed(seed) seeds Python's
    random; generate_fewshot_dataset(train, num_shots=K), then (val, num_shots=min(K, 4));
    each: a defaultdict(list) by label in order of appearance, random.sample(items, K) per
    label, a label with fewer items kept whole (repeat=False)."""
    state = random.getstate()
    random.seed(seed)
    try:
        def generate_fewshot_dataset(items, num_shots):
            tracker = defaultdict(list)
            for item in items:
                tracker[item[1]].append(item)
            dataset = []
            for label, group in tracker.items():
                dataset.extend(random.sample(group, num_shots) if len(group) >= num_shots else group)
            return dataset

        train = generate_fewshot_dataset(split["train"], shots)
        val = generate_fewshot_dataset(split["val"], min(shots, 4))
    finally:
        random.setstate(state)
    return train, val


@pytest.fixture()
def parity_root(tmp_path):
    split = parity_split()
    return write_split_set(tmp_path, "oxford_pets", split), split


def test_parity_fixture_is_what_it_claims(parity_root):
    _, split = parity_root
    labels = [e[1] for e in split["train"]]
    assert list(dict.fromkeys(labels)) == [3, 0, 4, 1, 2]
    assert np.bincount(labels).tolist() == [23, 17, 16, 9, 30]
    assert np.bincount([e[1] for e in split["val"]]).tolist() == [6, 3, 5, 7, 4]


@pytest.mark.parametrize("shots", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_k_shot_subsets_are_dassls(parity_root, shots, seed):
    root, split = parity_root
    train_ref, val_ref = dassl_reference(split, shots, seed)
    splits = read(root, "oxford_pets", shots=shots, split_seed=seed)
    images = root / "images"
    assert [str(p.relative_to(images)) for p in splits.train.paths] == [e[0] for e in train_ref]
    assert splits.train.labels[:, 0].tolist() == [e[1] for e in train_ref]
    assert [str(p.relative_to(images)) for p in splits.val.paths] == [e[0] for e in val_ref]
    counts = np.bincount(splits.train.labels[:, 0], minlength=5).tolist()
    assert counts == [min(shots, n) for n in [23, 17, 16, 9, 30]]  # label 3 keeps its 9 at K=16
    assert len(splits.test) == 10  # the test split is never sampled


def test_shots_json_lists_the_dassl_subset(parity_root, tmp_path):
    from clipadapt.data.splits import load_shots, save_shots

    root, split = parity_root
    splits = read(root, "oxford_pets", shots=4, split_seed=2)
    save_shots(tmp_path / "shots.json", splits.train, np.arange(len(splits.train)))  # what workflow.py writes
    listed = json.loads((tmp_path / "shots.json").read_text())["images"]
    assert [Path(p).name for p in listed] == [e[0] for e in dassl_reference(split, 4, 2)[0]]
    full = read(root, "oxford_pets")
    assert len(load_shots(tmp_path / "shots.json", full.train)) == len(listed)


@pytest.mark.filterwarnings("ignore")
def test_a_training_run_writes_the_dassl_subset_of_its_base_classes_to_shots_json(parity_root, tmp_path):
    from clipadapt.config import RunConfig
    from clipadapt.workflow import train_run

    root, split = parity_root
    cfg = RunConfig.model_validate({
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "benchmark", "dataset": "oxford_pets", "root": str(root), "shots": 2, "split_seed": 3,
                 "class_subset": "base"},
        "method": {"name": "linear_probe"}, "train": {"epochs": 1, "batch_size": 8, "device": "cpu"}})
    train_run(cfg, tmp_path / "run", progress=False)
    listed = json.loads((tmp_path / "run" / "shots.json").read_text())["images"]
    assert [Path(p).name for p in listed] == [e[0] for e in dassl_reference(split, 2, 3)[0] if e[1] < 3]


def test_a_set_without_a_val_list_draws_its_val_from_the_rest_of_train(tmp_path):
    root = write_cub(tmp_path)
    full = read(root, "cub200")
    splits = read(root, "cub200", shots=2, split_seed=1)
    rng = random.Random(1)
    labels = full.train.labels[:, 0].tolist()
    groups = defaultdict(list)
    for row, label in enumerate(labels):
        groups[label].append(row)
    picked = [row for rows in groups.values() for row in rng.sample(rows, 2)]
    assert splits.train.paths == [full.train.paths[r] for r in picked]
    assert np.bincount(splits.val.labels[:, 0]).tolist() == [2, 2, 2]
    assert not set(splits.val.paths) & set(splits.train.paths)


# --- base-to-novel -------------------------------------------------------------------------

def test_base_and_novel_classes_are_relabelled_halves(parity_root):
    root, _ = parity_root
    full = read(root, "oxford_pets")
    base = read(root, "oxford_pets", class_subset="base")
    novel = read(root, "oxford_pets", class_subset="novel")
    assert base.task.attributes[0].classes == ("abyssinian", "american_bulldog", "bengal")  # ceil(5 / 2)
    assert novel.task.attributes[0].classes == ("birman", "bombay")
    assert base.task.attributes[0].prompts()[1] == "a photo of a american bulldog, a kind of pet."
    for subset, kept in ((base, [0, 1, 2]), (novel, [3, 4])):
        for name in ("train", "val", "test"):
            whole, part = getattr(full, name), getattr(subset, name)
            rows = np.flatnonzero(np.isin(whole.labels[:, 0], kept))
            assert part.paths == [whole.paths[r] for r in rows]
            assert part.labels[:, 0].tolist() == [kept.index(v) for v in whole.labels[rows, 0]]


def test_base_classes_of_a_k_shot_run_are_coops(parity_root):
    """CoOp subsamples the classes after drawing the shots of all of them."""
    root, split = parity_root
    train_ref, val_ref = dassl_reference(split, 8, 3)
    splits = read(root, "oxford_pets", shots=8, split_seed=3, class_subset="novel")
    assert [p.name for p in splits.train.paths] == [e[0] for e in train_ref if e[1] >= 3]
    assert splits.train.labels[:, 0].tolist() == [e[1] - 3 for e in train_ref if e[1] >= 3]
    assert [p.name for p in splits.val.paths] == [e[0] for e in val_ref if e[1] >= 3]


def test_class_subset_works_for_a_folder_data_set_too(tmp_path):
    for c in ("ant", "bee", "cat"):
        for n in range(2):
            put(tmp_path / "train" / c / f"{n}.jpg")
    splits = build_splits(DataConfig(format="folder", root=tmp_path, val_fraction=0, class_subset="novel"))
    assert splits.task.attributes[0].classes == ("cat",) and splits.train.labels[:, 0].tolist() == [0, 0]


def test_class_subset_needs_one_single_label_attribute():
    from clipadapt.data.dataset import LabelledImages
    from clipadapt.data.fewshot import class_subset
    from clipadapt.task import Attribute, TaskSpec

    task = TaskSpec((Attribute("a", ("x", "y")), Attribute("b", ("u", "v"))))
    images = LabelledImages([Path("1.jpg")], np.array([[0, 1]]), task)
    with pytest.raises(ClipAdaptError, match="one single-label attribute"):
        class_subset("base", images)


# --- wrong layouts -------------------------------------------------------------------------

def assert_tree_error(excinfo, key, problem):
    message = str(excinfo.value)
    assert problem in message, message
    assert f"  {LAYOUTS[key].folder}/" in message and LAYOUTS[key].index in message


def test_a_missing_split_file_shows_the_expected_tree(tmp_path):
    with pytest.raises(ClipAdaptError) as excinfo:
        read(tmp_path, "dtd")
    assert_tree_error(excinfo, "dtd", "split_zhou_DescribableTextures.json is missing")
    assert "images/" in str(excinfo.value)


def test_a_missing_image_folder_shows_the_expected_tree(tmp_path):
    root = write_set(tmp_path, "sun397")
    (root / "SUN397").rename(root / "images")
    with pytest.raises(ClipAdaptError) as excinfo:
        read(root, "sun397")
    assert_tree_error(excinfo, "sun397", f"the folder {root / 'SUN397'} is missing")


def test_images_in_the_wrong_place_show_the_expected_tree(tmp_path):
    root = write_set(tmp_path, "food101")
    (root / "images" / "apple_pie").rename(root / "apple_pie")
    with pytest.raises(ClipAdaptError) as excinfo:
        read(root, "food101")
    assert_tree_error(excinfo, "food101", "the first train image")


def test_a_malformed_split_file_names_the_entry(tmp_path):
    split = split_entries("ucf101")
    split["val"][1] = ["Archery/v_1.jpg", "2", "Archery"]
    root = write_split_set(tmp_path, "ucf101", split)
    with pytest.raises(ClipAdaptError) as excinfo:
        read(root, "ucf101")
    assert_tree_error(excinfo, "ucf101", "val[1] is ['Archery/v_1.jpg', '2', 'Archery']")


@pytest.mark.parametrize("key, missing", [("fgvc_aircraft", "images_variant_val.txt"), ("cub200", "classes.txt"),
                                          ("imagenet", "images/val")])
def test_own_format_sets_name_the_missing_file(tmp_path, key, missing):
    root = write_set(tmp_path, key)
    target = root / missing
    target.rename(target.with_name(target.name + ".bak"))
    with pytest.raises(ClipAdaptError) as excinfo:
        read(root, key)
    assert_tree_error(excinfo, key, f"{target} is missing")


def test_a_bad_cub_class_number_is_named(tmp_path):
    root = write_cub(tmp_path)
    (root / "image_class_labels.txt").write_text((root / "image_class_labels.txt").read_text().replace("3 3\n", "3 three\n"))
    with pytest.raises(ClipAdaptError) as excinfo:
        read(root, "cub200")
    assert_tree_error(excinfo, "cub200", "image_class_labels.txt: 'three' is not a number")


def test_an_imagenet_folder_missing_from_classnames_txt_is_named(tmp_path):
    root = write_imagenet(tmp_path)
    put(root / "images" / "train" / "n99999999" / "x.JPEG")
    with pytest.raises(ClipAdaptError, match="class folder 'n99999999' is not listed in classnames.txt"):
        read(root, "imagenet")


def test_dataset_and_root_are_required(tmp_path):
    with pytest.raises(ClipAdaptError, match="needs data.dataset, one of imagenet, caltech101"):
        read(tmp_path, None)
    with pytest.raises(ClipAdaptError, match="'flowers' is not one"):
        read(tmp_path, "flowers")
    with pytest.raises(ClipAdaptError, match="data.root is required"):
        build_splits(DataConfig(format="benchmark", dataset="eurosat"))


def test_the_docs_show_every_expected_tree():
    page = (Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    missing = [key for key in LAYOUTS if expected_tree(key) not in page or f"`{key}`" not in page]
    assert not missing, f"docs/benchmarks.md lacks the tree of {missing}"
