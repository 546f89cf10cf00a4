"""Create a ClipBackbone from a model name and a weights source.

Weights sources (`pretrained`):
- "embedded": weights shipped with clipadapt (the tiny CLIP pretrained on synthetic data);
- an open_clip tag such as "openai" or "laion2b_s34b_b88k" (downloaded by open_clip,
  or read from its cache when offline);
- a local file (.safetensors, .pt, .pth, .bin) holding an open_clip state dict; the
  open_clip tag it is a copy of (`tag`, or recognised from its path) brings that tag's
  normalisation, resize rule and activation (backbone/tags.py);
- None / "random": random weights (seeded, so feature caches stay valid), for benchmarks.
- a folder written by transformers' `save_pretrained` (CLIPModel / SiglipModel), or
  "hf-transformers:org/repo": converted to the open_clip architecture its config.json
  describes (name "auto") or checks against (backbone/hf_transformers.py);
A model name "hf-hub:org/repo" loads config and weights from the Hugging Face hub.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import open_clip
import torch
from open_clip.model import set_model_preprocess_cfg

from clipadapt.backbone.clip import ClipBackbone
from clipadapt.backbone.model_names import list_backbones, register_configs  # noqa: F401 - list_backbones: the package's name
from clipadapt.backbone.hf_transformers import AUTO_NAME, TransformersFolder, is_transformers_source
from clipadapt.backbone.tags import PREPROCESSING_FIELDS, recognise_tag, tag_preprocessing
from clipadapt.backbone.timm_tower import TimmTowerBackbone, timm_family
from clipadapt.backbone.weights import EMBEDDED_WEIGHTS, file_fingerprint, load_strict, read_state_dict
from clipadapt.errors import ClipAdaptError
from clipadapt.hub_access import EMBEDDED_ROUTE, from_hub

RANDOM_INIT_SEED = 0


def wrap(model: torch.nn.Module, **identity) -> ClipBackbone:
    """The backbone class of the model's image tower: CLIP's own ViT, or a timm tower
    (SigLIP, EVA02); anything else is one clear error naming the families."""
    return (TimmTowerBackbone if timm_family(model) else ClipBackbone)(model, **identity)


def _is_local_file(pretrained: str) -> bool:
    return Path(pretrained).expanduser().suffix in {".safetensors", ".pt", ".pth", ".bin"} or Path(pretrained).expanduser().is_file()


def _random_model(name: str, quick_gelu: bool = False) -> torch.nn.Module:
    # Seeded so that "random weights" are the same weights every time (cache keys rely on it).
    # open_clip warns "initialized randomly" on every such call; here that is the request
    # (or weights are loaded right after), so the warning is muted for this call only.
    fork = torch.random.fork_rng(devices=[])  # the CPU's RNG only: touching CUDA here would start a GPU context
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with fork:
            torch.manual_seed(RANDOM_INIT_SEED)
            return open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu)
    finally:
        logging.disable(previous)


def create_backbone(name: str = "clipadapt-tiny", pretrained: str | None = "embedded",
                    tag: str | None = None) -> ClipBackbone:
    """Build a frozen ClipBackbone. `tag`: for a local weights file, the open_clip tag it
    is a copy of (default: recognised from the file's path, see backbone/tags.py).

    >>> bb = create_backbone("clipadapt-micro", None)
    >>> bb.num_blocks, bb.width
    (2, 64)
    """
    register_configs()
    if is_transformers_source(pretrained):
        return _from_transformers(name, pretrained, tag)
    if name == AUTO_NAME:
        raise ClipAdaptError(f"backbone.name '{AUTO_NAME}' takes the architecture from a transformers folder's "
                             f"config.json, and backbone.pretrained {pretrained!r} is not such a folder (save_pretrained's "
                             "output, or hf-transformers:org/repo). Name the open_clip model instead.")
    if name.startswith("hf-hub:"):
        return _from_hub(name)

    if name not in open_clip.list_models():
        close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        raise ClipAdaptError(f"Unknown backbone '{name}'. Did you mean {close}? `clipadapt info --list-backbones` lists all.")

    if tag and (pretrained in (None, "", "random", "none", "embedded") or not _is_local_file(pretrained)):
        raise ClipAdaptError(f"backbone.tag '{tag}' names the open_clip tag a local weights FILE is a copy of; "
                             f"backbone.pretrained is '{pretrained}'. Give the file's path, or drop backbone.tag.")

    if pretrained in (None, "", "random", "none"):
        return wrap(_random_model(name), name=name, pretrained=None, weights_id=f"random-seed{RANDOM_INIT_SEED}")

    if pretrained == "embedded":
        return _from_file(name, _embedded_path(name), pretrained="embedded")

    if _is_local_file(pretrained):
        path = Path(pretrained).expanduser()
        return _from_file(name, path, pretrained=str(pretrained), tag=tag or recognise_tag(name, path), known=False)

    return _from_tag(name, pretrained)


def _from_hub(name: str) -> ClipBackbone:
    """An 'hf-hub:org/repo' model: architecture, weights and preprocessing from the hub."""
    fix = ("Download the repository once and pass backbone.name=<open_clip model name> with "
           f"backbone.pretrained=<path to its weights file>. {EMBEDDED_ROUTE}")
    try:
        model = from_hub(f"'{name}'", lambda: open_clip.create_model(name), fix)
    except ClipAdaptError:
        raise
    except Exception as exc:
        raise ClipAdaptError(f"Could not load '{name}' from the Hugging Face hub ({exc}). {fix}") from None
    return wrap(model, name=name, pretrained=None, weights_id=name)


def _embedded_path(name: str) -> Path:
    """The weights file shipped inside clipadapt for `name`."""
    path = EMBEDDED_WEIGHTS.get(name)
    if path is None:
        raise ClipAdaptError(
            f"No embedded weights for '{name}'; embedded weights exist for {sorted(EMBEDDED_WEIGHTS)}. "
            "Use an open_clip tag, a local file, or pretrained=null for random weights."
        )
    if not path.is_file():
        raise ClipAdaptError(
            f"The embedded weights file {path} is missing from this install. Reinstall clipadapt, or "
            "recreate it with scripts/pretrain_tiny_clip.py."
        )
    return path


def _from_tag(name: str, pretrained: str) -> ClipBackbone:
    """open_clip's weights tag `pretrained` of `name` (downloaded once into open_clip's cache)."""
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        raise ClipAdaptError(
            f"'{pretrained}' is neither a file nor an open_clip weights tag of '{name}' (tags: {tags or 'none'})."
        )
    fix = ("Download the checkpoint once (open_clip caches it) or pass a local copy as backbone.pretrained=<path to "
           f"its .safetensors / .bin file>. {EMBEDDED_ROUTE}")
    try:
        model = from_hub(f"The weights '{pretrained}' of {name}",
                         lambda: open_clip.create_model(name, pretrained=pretrained), fix)
    except ClipAdaptError:
        raise
    except Exception as exc:
        raise ClipAdaptError(
            f"Could not load weights '{pretrained}' for '{name}' ({type(exc).__name__}: {exc}). {fix}") from None
    return wrap(model, name=name, pretrained=pretrained, weights_id=f"{name}:{pretrained}")


def _from_file(name: str, path: Path, pretrained: str, tag: str | None = None, known: bool = True) -> ClipBackbone:
    """Weights from a file. With `tag`, the model takes that tag's activation and
    preprocessing; without, the architecture's defaults (`known` says whether those are
    right: the embedded weights were trained with them, a stranger's file may not be)."""
    settings = tag_preprocessing(name, tag) if tag else {}
    wants_quick_gelu = settings.get("quick_gelu", False) and not open_clip.get_model_config(name).get("quick_gelu")
    model = _random_model(name, quick_gelu=wants_quick_gelu)
    load_strict(model, read_state_dict(path), source=str(path), what=f"model '{name}'")
    if tag:
        preprocess = dict(getattr(model.visual, "preprocess_cfg", None) or {})
        preprocess.update({k: settings[k] for k in PREPROCESSING_FIELDS if k in settings})
        set_model_preprocess_cfg(model, preprocess)
    weights_id = f"file:{file_fingerprint(path)}" + (f"@{tag}" if tag else "")
    return wrap(model, name=name, pretrained=pretrained, weights_id=weights_id, tag=tag,
                preprocessing_known=known or bool(tag))


def _from_transformers(name: str, pretrained: str, tag: str | None) -> ClipBackbone:
    """A transformers CLIPModel / SiglipModel folder (or hub repository) converted into
    open_clip architecture `name` ("auto": the one its config.json describes)."""
    if tag:
        raise ClipAdaptError(f"backbone.tag '{tag}' is for open_clip weights files; the transformers folder "
                             f"'{pretrained}' brings its own preprocessing (preprocessor_config.json). Drop backbone.tag.")
    source = TransformersFolder.open(pretrained)
    name = source.architecture(name)
    model = _random_model(name)
    source.load_into(model, name)
    backbone = wrap(model, name=name, pretrained=pretrained, weights_id=source.weights_id,
                    preprocessing_known=source.preprocessing() is not None)
    backbone._tokenizer = source.tokenizer(name)  # None: the architecture's own, as for any open_clip model
    return backbone


PREPROCESSING_KEYS = ("preprocess", "normalise", "interpolation")  # open_backbone's keywords (a config's keys)


def open_backbone(cfg_or_name, pretrained: str | None = None, *, tag: str | None = None,
                  **preprocessing) -> ClipBackbone:
    """The one call that opens a backbone ready to use (as open_clip's
    `create_model_and_transforms`): the frozen model with its preprocessing, normalisation and
    interpolation set; the tokenizer (`backbone.tokenize`) is the model's own, loaded on first use.

    `cfg_or_name`: a BackboneConfig or a card's backbone dict (name, pretrained, tag and the
    preprocessing keys all come from it), or an open_clip name, then with `pretrained`, `tag`
    and the keywords preprocess / normalise / interpolation (unset ones take the defaults).

    >>> open_backbone("clipadapt-micro", preprocess="letterbox").preprocess
    'letterbox'
    """
    if isinstance(cfg_or_name, str):
        cfg = {"name": cfg_or_name, "pretrained": pretrained, "tag": tag, **preprocessing}
    elif pretrained is not None or tag is not None or preprocessing:
        raise TypeError("open_backbone(cfg): the config holds the weights, tag and preprocessing; pass no more.")
    else:
        cfg = cfg_or_name
    get = _setting_reader(cfg)
    unknown = set(preprocessing) - set(PREPROCESSING_KEYS)
    if unknown:
        raise TypeError(f"open_backbone: unknown preprocessing keyword(s) {sorted(unknown)}; use {PREPROCESSING_KEYS}.")
    return apply_preprocessing(create_backbone(get("name"), get("pretrained"), get("tag")), cfg)


# the name of open_backbone for a config, kept because callers (tests/test_backbone_tags.py) use it
backbone_from_config = open_backbone


def _setting_reader(cfg):
    """get(key) on a BackboneConfig or on a card's backbone dict alike (None when unset)."""
    return cfg.get if isinstance(cfg, dict) else (lambda key, default=None: getattr(cfg, key, default))


def apply_preprocessing(backbone: ClipBackbone, cfg) -> ClipBackbone:
    """Set the preprocessing, normalisation and interpolation a BackboneConfig (or a
    card's backbone dict) names on `backbone`; unset ones take the defaults."""
    get = _setting_reader(cfg)
    return backbone.set_preprocessing(get("preprocess") or "crop", get("normalise") or "model",
                                      get("interpolation") or "bicubic")
