"""What keeps a cell from running here, and what would fetch it: a data set missing
under --data, backbone weights neither on disk nor downloadable (offline), a method this
clipadapt does not have. Each check answers None (runnable) or a `Missing` with the
reason and the command or instructions that would get the missing part, so the
comparison lists such cells instead of dropping them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clipadapt.config import BackboneConfig, DataConfig

COOP_DATASETS = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"
# The images' own downloads, as CoOp's DATASETS.md lists them; the split_zhou_*.json files
# are the CoOp authors' (Google Drive links in that file, section named after the set).
IMAGES = {
    "imagenet": "the train and val images from https://image-net.org (registration), classnames.txt from CoOp's link",
    "caltech101": "http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",
    "oxford_pets": "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz (+ annotations.tar.gz)",
    "stanford_cars": "http://ai.stanford.edu/~jkrause/car196/cars_train.tgz and cars_test.tgz",
    "oxford_flowers": "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz (+ imagelabels.mat)",
    "food101": "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (food-101.tar.gz)",
    "fgvc_aircraft": "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz "
                     "(its data/ folder, renamed fgvc_aircraft/)",
    "sun397": "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
    "dtd": "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
    "eurosat": "http://madm.dfki.de/files/sentinel/EuroSAT.zip",
    "ucf101": "UCF-101-midframes.zip (CoOp's Google Drive link: each video's middle frame)",
    "imagenetv2": "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",
    "imagenet_sketch": "https://github.com/HaohanWang/ImageNet-Sketch",
    "imagenet_a": "https://github.com/hendrycks/natural-adv-examples",
    "imagenet_r": "https://github.com/hendrycks/imagenet-r",
}
OWN_FILES = {"cub200": "CUB_200_2011.tgz from the Caltech-UCSD Birds-200-2011 page (its own images.txt, "
                       "train_test_split.txt, classes.txt, image_class_labels.txt)"}
# What the data formats other than `benchmark` read, and where docs/data.md describes them.
DATA_PATH_FIELDS = ("root", "train_manifest", "test_manifest", "val_manifest", "attribute_file")


@dataclass(frozen=True)
class Missing:
    """Why a cell cannot run here and what would fetch what it lacks."""

    reason: str
    fetch: str


def data_missing(data: DataConfig) -> Missing | None:
    """The data set of `data` is not where its settings say (synthetic formats render
    themselves, so they are never missing)."""
    if data.format.startswith("synthetic-"):
        return None
    if data.format == "benchmark":
        return _benchmark_missing(data)
    for field in DATA_PATH_FIELDS:
        path = getattr(data, field)
        if path is not None and not Path(path).expanduser().exists():
            return Missing(f"data.{field} {path} does not exist (format {data.format})",
                           f"get the {data.format} data as docs/data.md describes it and put it at {path}")
    return None


def _benchmark_missing(data: DataConfig) -> Missing | None:
    from clipadapt.data.benchmark import LAYOUTS

    layout = LAYOUTS.get(data.dataset or "")
    if layout is None or data.root is None:
        return None  # the run's own checks name the mistake
    root = Path(data.root).expanduser()
    if (root / layout.index).is_file() or (root / layout.folder / layout.index).is_file():
        return None
    where = root / layout.folder
    reason = f"{layout.name} is not under {root} ({where / layout.index} is missing)"
    tree = "(the tree: docs/benchmarks.md#expected-trees)"
    if data.dataset in OWN_FILES:
        return Missing(reason, f"into {where}/: {OWN_FILES[data.dataset]} {tree}")
    anchor = layout.name.lower().replace("imagenet-v2", "imagenetv2")  # CoOp's section headings
    return Missing(reason, f"into {where}/: {IMAGES.get(data.dataset, 'the images from the data set site')}; "
                           f"the split / class files: {COOP_DATASETS}#{anchor} {tree}")


def descriptions_missing(params: dict) -> Missing | None:
    """A label-free method's class descriptions file (method.params.descriptions) that is not there."""
    path = params.get("descriptions")
    if not isinstance(path, str) or Path(path).expanduser().exists():
        return None
    return Missing(f"the class descriptions {path} do not exist",
                   f"put {{class name: [sentences]}} there (the microCLIP authors' or CuPL's files, "
                   "docs/benchmarks.md#label-free-adaptation-microclip-on-these-data-sets), or write them with "
                   "`clipadapt describe`")


def weights_missing(backbone: BackboneConfig) -> Missing | None:
    """The backbone's weights can be neither read from disk nor downloaded now."""
    name, pretrained = backbone.name, backbone.pretrained
    if pretrained in (None, "", "random", "none"):
        return None
    if pretrained == "embedded":
        from clipadapt.backbone.weights import EMBEDDED_WEIGHTS

        path = EMBEDDED_WEIGHTS.get(name)
        return None if path is None or path.is_file() else Missing(
            f"the embedded weights of {name} are missing from this install", "reinstall clipadapt")
    from clipadapt.backbone.hf_transformers import is_transformers_source

    path = Path(pretrained).expanduser()
    if is_transformers_source(pretrained) or path.exists():
        return None  # a transformers folder / repository, or a file that is there: its loader decides
    import open_clip

    if pretrained in open_clip.list_pretrained_tags_by_model(name):
        return _tag_missing(name, pretrained)
    if path.suffix or "/" in pretrained:
        return Missing(f"the weights file {path} does not exist", f"--weights PATH (a copy of {name}'s weights)")
    return None  # neither a file nor a tag of that model: the run says so, with the tags it has


def _tag_missing(name: str, tag: str) -> Missing | None:
    """An open_clip tag: fine when open_clip's cache holds it or the hub answers."""
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    from clipadapt.hub_access import hub_offline, hub_reachable

    if hub_reachable():
        return None  # downloaded (once) by the first run
    try:
        with hub_offline():
            download_pretrained(get_pretrained_cfg(name, tag))  # offline: answers from the cache or fails
        return None
    except Exception:  # noqa: BLE001 - whatever the hub library raises, the file is not in the cache
        pass
    return Missing(f"the weights {name}:{tag} are not in open_clip's cache and the hub cannot be reached (offline)",
                   f"online once: python -c \"import open_clip; open_clip.create_model('{name}', pretrained='{tag}')\" "
                   "(open_clip caches them), or --weights PATH (a local copy of the .safetensors / .bin)")


def method_missing(name: str) -> Missing | None:
    """A method this clipadapt does not have."""
    from clipadapt.methods import METHODS

    if name in METHODS.names():
        return None
    return Missing(f"method '{name}' is not in this clipadapt (`clipadapt list methods` lists them)",
                   "a clipadapt that has it, or --methods without it")
