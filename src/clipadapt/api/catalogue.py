"""What clipadapt can run, as data (`clipadapt list ...` prints the same), and the backbone
in one call, as open_clip's `create_model_and_transforms` gives it."""

from __future__ import annotations

from typing import Callable


def create_backbone(name: str = "clipadapt-tiny", pretrained: str | None = None) -> tuple:
    """(model, preprocess, tokenizer) in one call: the frozen ClipBackbone (an nn.Module with
    `encode_text`, `forward_features` and the open_clip model as `.model`), its test-time
    transform (PIL image -> [3, S, S] tensor) and its tokenizer (texts -> token ids).
    `pretrained`: an open_clip tag ("openai", "laion2b_s34b_b88k"), a local weights file, a
    transformers folder, "embedded", or "random"; None: the weights shipped with clipadapt
    for its tiny models, random weights for any other name (as open_clip).

    >>> model, preprocess, tokenizer = clipadapt.create_backbone("clipadapt-tiny")
    >>> model.image_size, tokenizer(["a photo of a cat"]).shape[0]
    (64, 1)
    """
    from clipadapt.backbone import open_backbone
    from clipadapt.backbone.weights import EMBEDDED_WEIGHTS
    from clipadapt.engine.sources import make_transform

    if pretrained is None:
        pretrained = "embedded" if name in EMBEDDED_WEIGHTS else "random"
    backbone = open_backbone(name, pretrained)
    return backbone, make_transform(backbone, train=False), backbone.tokenizer


def list_methods() -> list[dict]:
    """Every registered method: name, summary, whether it trains, its training plan
    ("supervised": `train`; "self_training": `adapt`), whether it scores class names it
    was not trained on, its params (`method.params.*`) and the backbone families it refuses
    (family: why).

    >>> [m["name"] for m in clipadapt.list_methods()][:3]        # doctest: +SKIP
    ['mhadapter', 'linear_probe', 'zeroshot']
    """
    from clipadapt.methods import METHODS

    return [{"name": name, "summary": cls.summary, "trains": cls.trains, "training_plan": cls.training_plan,
             "scores_any_classes": cls.scores_any_classes, "params": list(cls.Params.model_fields),
             "refused_families": dict(cls.refused_families)}
            for name, cls in ((name, METHODS.get(name)) for name in METHODS.names())]


def list_formats() -> list[dict]:
    """Every data format (`data.format`): name, summary, the format-specific `data.*` keys
    it reads, and whether its attributes are single-label whatever `data.task` says.

    >>> "folder" in [f["name"] for f in clipadapt.list_formats()]
    True
    """
    from clipadapt.format_index import DATA_FORMATS, data_format

    rows = []
    for name in DATA_FORMATS.names():
        fmt = data_format(name)
        rows.append({"name": name, "summary": fmt.summary or "registered by you", "reads": list(fmt.reads),
                     "single_label": fmt.single_label})
    return rows


def list_backbones(family: str | None = None, supported: bool | None = None) -> list[dict]:
    """Every model name `backbone.name` takes: name, its family ("clip", "siglip", "eva"; None
    for towers clipadapt does not run), whether clipadapt runs it, and whether weights ship
    with clipadapt. Filter with `family` or `supported`.

    >>> [b["name"] for b in clipadapt.list_backbones(family="clip")][:1]   # doctest: +SKIP
    ['RN50']
    """
    from clipadapt.backbone.families import family_of
    from clipadapt.backbone.model_names import list_backbones as model_names
    from clipadapt.backbone.weights import EMBEDDED_WEIGHTS

    keep: Callable[[dict], bool] = lambda row: ((family is None or row["family"] == family)  # noqa: E731
                                               and (supported is None or row["supported"] == supported))
    rows = []
    for name in model_names():
        found = family_of(name)
        rows.append({"name": name, "family": found, "supported": found is not None,
                     "embedded_weights": name in EMBEDDED_WEIGHTS})
    return [row for row in rows if keep(row)]
