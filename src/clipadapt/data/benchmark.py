"""`format: benchmark`: the field's standard classification data sets, read from the layouts
they are distributed in (CoOp's DATASETS.md), with their fixed split files.

`data.dataset` names the set, `data.root` its folder (or the folder above it, holding it
under CoOp's folder name). Every set becomes one single-label attribute (default name
"class") whose classes are the field's class names in the split file's label order, with
a prompt template per set. With `data.shots: K` the K-shot train and min(K, 4)-shot val
subsets are Dassl's for the seed `data.split_seed` (clipadapt.data.fewshot).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipadapt.config import DataConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.fewshot import draw_fewshot
from clipadapt.data.images import IMAGE_EXTENSIONS
from clipadapt.data.folder import check_one_attribute
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import DataFormat
from clipadapt.task import Attribute, TaskSpec, normalise_class_name

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Layout:
    """One data set: how it sits on disk and how it is prompted.

    kind: split (a split_zhou_*.json), aircraft, cub, imagenet, or imagenet-variant.
    images: the folder the listed image paths are relative to ("" = the data set's folder).
    index: the file that holds the split or the class names (its absence = wrong root).
    tree: the expected layout, one line per entry, shown when something is missing.
    """

    name: str
    folder: str
    kind: str
    images: str
    index: str
    template: str
    tree: tuple[str, ...]


def _split_layout(name, folder, images, split_file, template, image_note, *extra):
    tree = (f"{images}/  {image_note}" if images else image_note, *extra,
            f"{split_file}  (CoOp's fixed split)")
    return Layout(name, folder, "split", images, split_file, template, tree)


def _imagenet_variant(name, folder, images, note):
    return Layout(name, folder, "imagenet-variant", images, "classnames.txt", "a photo of a {}.",
                  (f"{images}/  {note}", "classnames.txt  (a copy of imagenet/classnames.txt)"))


LAYOUTS: dict[str, Layout] = {
    "imagenet": Layout("ImageNet", "imagenet", "imagenet", "images", "classnames.txt", "a photo of a {}.", (
        "images/train/<wnid>/*.JPEG  (1,000 class folders such as n01440764)",
        "images/val/<wnid>/*.JPEG  (the validation images, sorted into the same class folders)",
        "classnames.txt  (one line per class: '<wnid> <class name>')")),
    "caltech101": _split_layout("Caltech101", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                                "a photo of a {}.", "<category>/image_0001.jpg ..."),
    "oxford_pets": _split_layout("OxfordPets", "oxford_pets", "images", "split_zhou_OxfordPets.json",
                                 "a photo of a {}, a kind of pet.", "<Breed>_<n>.jpg", "annotations/  (not read)"),
    "stanford_cars": _split_layout("StanfordCars", "stanford_cars", "", "split_zhou_StanfordCars.json",
                                   "a photo of a {}, a model of car.", "cars_train/00001.jpg ...",
                                   "cars_test/00001.jpg ...", "devkit/, cars_test_annos_withlabels.mat  (not read)"),
    "oxford_flowers": _split_layout("Flowers102", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                                    "a photo of a {}, a kind of flower.", "image_00001.jpg ...",
                                    "imagelabels.mat, cat_to_name.json  (not read)"),
    "food101": _split_layout("Food101", "food-101", "images", "split_zhou_Food101.json",
                             "a photo of {}, a kind of food.", "<dish>/<id>.jpg", "meta/  (not read)"),
    "fgvc_aircraft": Layout("FGVCAircraft", "fgvc_aircraft", "aircraft", "images", "variants.txt",
                            "a photo of a {}, a kind of aircraft.", (
                                "images/<id>.jpg",
                                "variants.txt  (one variant name per line: the classes, in label order)",
                                "images_variant_train.txt, images_variant_val.txt, images_variant_test.txt  "
                                "('<id> <variant>' per line)")),
    "sun397": _split_layout("SUN397", "sun397", "SUN397", "split_zhou_SUN397.json", "a photo of a {}, a kind of place.",
                            "a/abbey/sun_*.jpg ..."),
    "dtd": _split_layout("DTD", "dtd", "images", "split_zhou_DescribableTextures.json", "a photo of a {} texture.",
                         "<texture>/<texture>_0001.jpg ...", "imdb/, labels/  (not read)"),
    "eurosat": _split_layout("EuroSAT", "eurosat", "2750", "split_zhou_EuroSAT.json", "a satellite photo of {}.",
                             "<Class>/<Class>_1.jpg ..."),
    "ucf101": _split_layout("UCF101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
                            "a photo of a person doing {}.", "<Action_Name>/v_*.jpg  (each video's middle frame)"),
    "cub200": Layout("CUB-200-2011", "CUB_200_2011", "cub", "images", "images.txt", "a photo of a {}, a kind of bird.", (
        "images/<nnn>.<Species>/<file>.jpg",
        "images.txt  ('<image id> <path under images/>')",
        "train_test_split.txt  ('<image id> <1 = train, 0 = test>')",
        "classes.txt  ('<class id> <nnn>.<Species_Name>')",
        "image_class_labels.txt  ('<image id> <class id>')")),
    "imagenetv2": _imagenet_variant("ImageNet-V2", "imagenetv2", "imagenetv2-matched-frequency-format-val",
                                    "<0..999>/*.jpeg  (folder = ImageNet label)"),
    "imagenet_sketch": _imagenet_variant("ImageNet-Sketch", "imagenet-sketch", "images", "<wnid>/*.JPEG  (1,000 folders)"),
    "imagenet_a": _imagenet_variant("ImageNet-A", "imagenet-adversarial", "imagenet-a", "<wnid>/*.jpg  (200 folders)"),
    "imagenet_r": _imagenet_variant("ImageNet-R", "imagenet-rendition", "imagenet-r", "<wnid>/*.jpg  (200 folders)"),
}


def expected_tree(key: str) -> str:
    """The layout of data set `key` as an indented tree (for messages and docs)."""
    layout = LAYOUTS[key]
    return "\n".join([f"  {layout.folder}/", *(f"  |-- {line}" for line in layout.tree)])


class _Source:
    """The data set's folder and the means to fail with the expected tree."""

    def __init__(self, key: str, root: Path):
        self.key, self.layout = key, LAYOUTS[key]
        # data.root may be the data set's folder or the folder above it ($DATA in CoOp's words).
        nested = root / self.layout.folder
        self.root = nested if not (root / self.layout.index).is_file() and (nested / self.layout.index).is_file() else root
        self.images = self.root / self.layout.images

    def fail(self, problem: str) -> ClipAdaptError:
        return ClipAdaptError(
            f"data.dataset={self.key} ({self.layout.name}): {problem}\n"
            f"Expected layout (data.root = this folder, or the folder that holds it; now {self.root}):\n"
            f"{expected_tree(self.key)}\n"
            "docs/benchmarks.md says where each file comes from.")

    def file(self, name: str) -> Path:
        path = self.root / name
        if not path.is_file():
            raise self.fail(f"{path} is missing.")
        return path

    def folder(self, path: Path) -> Path:
        if not path.is_dir():
            raise self.fail(f"the folder {path} is missing.")
        return path

    def lines(self, name: str, fields: int) -> list[list[str]]:
        """The non-empty lines of a text file split on spaces; the first `fields` - 1 splits
        are fields, the rest stays whole (class names hold spaces)."""
        path = self.file(name)
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                parts = line.strip().split(" ", fields - 1)
                if len(parts) < fields:
                    raise self.fail(f"{path} line {number}: '{line.strip()}' has {len(parts)} field(s), not {fields}.")
                rows.append(parts)
        if not rows:
            raise self.fail(f"{path} is empty.")
        return rows

    def number(self, text: str, where: str) -> int:
        if not text.strip().isdigit():
            raise self.fail(f"{where}: '{text}' is not a number.")
        return int(text)

    def check_listed(self, split: str, paths: list[Path]) -> None:
        """A wrong root shows at the first listed image; every image is not stat-ed here."""
        if not paths:
            raise self.fail(f"the {split} split lists no images.")
        if not paths[0].is_file():
            raise self.fail(f"the first {split} image, {paths[0]}, is missing.")


# A split: image paths, integer labels and where each row came from.
Items = tuple[list[Path], list[int], list[str]]


def _read_split_file(src: _Source) -> tuple[dict[str, Items], dict[int, str]]:
    """split_zhou_<Name>.json: {"train"|"val"|"test": [[relative path, label, class name], ...]}."""
    path = src.file(src.layout.index)
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise src.fail(f"{path} is not JSON ({exc}).") from None
    if not isinstance(split, dict) or any(not isinstance(split.get(s), list) for s in SPLITS):
        raise src.fail(f"{path} must hold 'train', 'val' and 'test' lists.")
    out, names = {}, {}
    for name in SPLITS:
        paths, labels, sources = [], [], []
        for i, entry in enumerate(split[name]):
            ok = isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str) and isinstance(entry[2], str)
            if not ok or isinstance(entry[1], bool) or not isinstance(entry[1], int) or entry[1] < 0:
                raise src.fail(f"{path}: {name}[{i}] is {entry!r}, not [relative image path, label >= 0, class name].")
            if names.setdefault(entry[1], entry[2]) != entry[2]:
                raise src.fail(f"{path}: label {entry[1]} is '{names[entry[1]]}' and '{entry[2]}' ({name}[{i}]).")
            paths.append(src.images / entry[0])
            labels.append(entry[1])
            sources.append(f"{path.name}:{name}[{i}]")
        out[name] = (paths, labels, sources)
    return out, names


def _read_aircraft(src: _Source) -> tuple[dict[str, Items], dict[int, str]]:
    """FGVC-Aircraft's own lists: variants.txt (classes in label order) and
    images_variant_<split>.txt ('<image id> <variant>'), images in images/<id>.jpg."""
    variants = [" ".join(parts) for parts in src.lines("variants.txt", 1)]
    label_of = {v: k for k, v in enumerate(variants)}
    out = {}
    for split in SPLITS:
        name = f"images_variant_{split}.txt"
        paths, labels, sources = [], [], []
        for number, (image_id, variant) in enumerate(src.lines(name, 2), 1):
            if variant not in label_of:
                raise src.fail(f"{src.root / name} line {number}: variant '{variant}' is not in variants.txt.")
            paths.append(src.images / f"{image_id}.jpg")
            labels.append(label_of[variant])
            sources.append(f"{name}:{number}")
        out[split] = (paths, labels, sources)
    return out, dict(enumerate(variants))


def _read_cub(src: _Source) -> tuple[dict[str, Items], dict[int, str]]:
    """CUB-200-2011's own files; no val list (the K-shot val is drawn from train)."""
    images = dict(src.lines("images.txt", 2))
    is_train = dict(src.lines("train_test_split.txt", 2))
    label_of = dict(src.lines("image_class_labels.txt", 2))
    classes = {}
    for class_id, folder in src.lines("classes.txt", 2):
        # "001.Black_footed_Albatross" -> "Black_footed_Albatross"
        classes[src.number(class_id, "classes.txt") - 1] = folder.split(".", 1)[-1]
    out: dict[str, Items] = {"train": ([], [], []), "test": ([], [], [])}
    for number, (image_id, relative) in enumerate(images.items(), 1):
        if image_id not in is_train or image_id not in label_of:
            raise src.fail(f"image {image_id} of images.txt has no line in train_test_split.txt / image_class_labels.txt.")
        label = src.number(label_of[image_id], "image_class_labels.txt") - 1
        if label not in classes:
            raise src.fail(f"image {image_id} has class {label + 1}, which classes.txt does not list.")
        paths, labels, sources = out["train" if is_train[image_id].strip() == "1" else "test"]
        paths.append(src.images / relative)
        labels.append(label)
        sources.append(f"images.txt:{number}")
    return out, classes


def _wnids(src: _Source) -> list[tuple[str, str]]:
    """classnames.txt: '<wnid> <class name>' per line, in ImageNet's label order."""
    return [(wnid, name) for wnid, name in src.lines("classnames.txt", 2)]


def _folder_images(folder: Path) -> list[Path]:
    """The images of one class folder, by name (CoOp lists them unsorted, in os.listdir
    order). scandir: ImageNet's 1.28 M files are told apart without a stat each."""
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if not e.name.startswith(".")
                       and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file())
    return [folder / name for name in names]


def _class_folders(src: _Source, top: Path, label_of: dict[str, int]) -> Items:
    """Images under top/<folder>/, each labelled label_of[folder]; a folder not in the
    class list is an error (a README.txt next to the folders is not a folder)."""
    folders = sorted(p for p in src.folder(top).iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise src.fail(f"{top} has no class folders.")
    unknown = [p.name for p in folders if p.name not in label_of]
    if unknown:
        raise src.fail(f"{top / unknown[0]}: class folder '{unknown[0]}' is not listed in classnames.txt.")
    paths, labels = [], []
    for folder in folders:
        found = _folder_images(folder)
        paths += found
        labels += [label_of[folder.name]] * len(found)
    return paths, labels, [str(p.relative_to(src.root)) for p in paths]


def _read_imagenet(src: _Source) -> tuple[dict[str, Items], dict[int, str]]:
    wnids = _wnids(src)
    label_of = {wnid: k for k, (wnid, _) in enumerate(wnids)}
    out = {"train": _class_folders(src, src.images / "train", label_of),
           "test": _class_folders(src, src.images / "val", label_of)}
    return out, {k: name for k, (_, name) in enumerate(wnids)}


def _read_imagenet_variant(src: _Source) -> tuple[dict[str, Items], dict[int, str]]:
    """Test sets in ImageNet's label space (all 1,000 classes; -A and -R fill 200 of them).
    ImageNet-V2's folders are the labels 0..999; the others are named by wnid."""
    wnids = _wnids(src)
    if src.key == "imagenetv2":
        label_of = {str(k): k for k in range(len(wnids))}
    else:
        label_of = {wnid: k for k, (wnid, _) in enumerate(wnids)}
    data = _class_folders(src, src.images, label_of)
    return {"train": data, "test": data}, {k: name for k, (_, name) in enumerate(wnids)}


READERS = {"split": _read_split_file, "aircraft": _read_aircraft, "cub": _read_cub,
           "imagenet": _read_imagenet, "imagenet-variant": _read_imagenet_variant}


def _attribute(src: _Source, names: dict[int, str], cfg: DataConfig) -> Attribute:
    """One attribute: the classes in label order, normalised; the field's spelling of each
    name (case kept, '_' read as a space) goes into the prompts through class_words."""
    missing = [k for k in range(max(names) + 1) if k not in names]
    if missing:
        raise src.fail(f"no class name for label {missing[0]} (labels must run 0..{max(names)}).")
    classes = [normalise_class_name(names[k]) for k in range(len(names))]
    twice = sorted({c for c in classes if classes.count(c) > 1})
    if twice:
        raise src.fail(f"the class name '{twice[0]}' stands for two labels.")
    name = cfg.attributes[0] if cfg.attributes else "class"
    words = {c: names[k].strip().replace("_", " ") for k, c in enumerate(classes)}
    words = {c: w for c, w in words.items() if w != c.replace("_", " ")}  # only where the case differs
    words.update({k.lower(): v for k, v in cfg.class_words.get(name, {}).items()})
    return Attribute(name, tuple(classes), cfg.templates.get(name, src.layout.template), words)


def read_benchmark(cfg: DataConfig):
    """(train, val, test) of data.dataset; val is the split file's (None where the set has
    no val list); with data.shots, Dassl's K-shot train and min(K, 4)-shot val."""
    if not cfg.dataset:
        raise ClipAdaptError(f"format 'benchmark' needs data.dataset, one of {', '.join(LAYOUTS)}; it is not set.")
    if cfg.root is None:
        raise ClipAdaptError(f"data.root is required for format 'benchmark' (the {cfg.dataset} folder).\n"
                             f"{expected_tree(cfg.dataset)}")
    src = _Source(cfg.dataset, Path(cfg.root).expanduser())
    src.file(src.layout.index)  # the wrong folder fails here, with the tree
    src.folder(src.images)
    splits, names = READERS[src.layout.kind](src)
    task = TaskSpec((_attribute(src, names, cfg),))
    made = {}
    for split, (paths, labels, sources) in splits.items():
        src.check_listed(split, paths)
        unknown = sorted(set(labels) - set(names))
        if unknown:
            raise src.fail(f"the {split} split has label {unknown[0]}, which the class list does not have.")
        made[split] = LabelledImages(paths, np.array(labels, dtype=np.int64)[:, None], task, sources)
    train, val, test = made["train"], made.get("val"), made["test"]
    if cfg.shots:
        train, val = draw_fewshot(train, val, cfg.shots, cfg.split_seed)
    return train, val, test


def check_benchmark_settings(cfg: DataConfig) -> None:
    """data.dataset, when given, must be a data set clipadapt knows the layout of."""
    if cfg.dataset and cfg.dataset not in LAYOUTS:
        from clipadapt.suggest import did_you_mean

        raise ClipAdaptError(f"format 'benchmark' needs data.dataset, one of {', '.join(LAYOUTS)}; '{cfg.dataset}' "
                             f"is not one.{did_you_mean(cfg.dataset, list(LAYOUTS))}")
    check_one_attribute(cfg)


# build_splits leaves the K-shot subsets to this reader (they are Dassl's, not its own).
BENCHMARK_FORMAT = DataFormat(read=read_benchmark, check=check_benchmark_settings, reads=("dataset",),
                              single_label=True, draws_shots=True,
                              summary="the field's classification benchmarks, read with their split files")

__all__ = ["BENCHMARK_FORMAT", "LAYOUTS", "expected_tree", "read_benchmark"]
