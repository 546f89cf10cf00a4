"""The typed run configuration: loaded from YAML, overridden with --set, validated.

Unknown keys are errors with a suggestion; every field has a sensible default so a
config file only states what differs from it.
"""

from __future__ import annotations

import difflib
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clipadapt.metrics.table import MONITORS
from clipadapt.errors import ClipAdaptError, ClipAdaptWarning
from clipadapt.validation import describe_error, plain_errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BackboneConfig(_Strict):
    """Which CLIP model, and which weights.

    `pretrained` is one of: "embedded" (the tiny CLIP shipped with clipadapt), an
    open_clip tag ("openai", "laion2b_s34b_b88k", ...), a local checkpoint file
    (.safetensors / .pt / .bin, open_clip state dict), a folder written by transformers'
    `save_pretrained` (CLIPModel / SiglipModel) or "hf-transformers:org/repo" (converted to
    open_clip; then `name` may be "auto": the architecture its config.json describes,
    docs/backbones.md), or null for random weights.
    `name` may also be "hf-hub:org/repo" (then `pretrained` is ignored).
    """

    name: str = "clipadapt-tiny"
    pretrained: str | None = "embedded"
    # crop: resize the short side + centre crop (test), random resized crop (train), SPEC 1.
    # letterbox: pad to a square with black borders, resize; train adds Pad(10) + RandomCrop
    # + flip (SPEC 2; keeps the head and feet of a tall pedestrian crop).
    # resize: straight to a square whatever the aspect ratio (the PromptPAR authors' test
    # transform); train adds Pad(10) + RandomCrop + flip as theirs does.
    preprocess: Literal["crop", "letterbox", "resize"] = "crop"
    normalise: Literal["model", "half"] = "model"  # half: mean = std = 0.5 (PromptPAR's authors)
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"  # bilinear: the PromptPAR authors' resize
    # For a local weights file: the open_clip tag it is a copy of (e.g. laion2b_s32b_b82k),
    # so it gets that tag's normalisation, resize rule and activation. Default: recognised
    # from the file's path when the tag or its hub repository appears in it.
    tag: str | None = None


class DataConfig(_Strict):
    """Where the labelled images come from and how they are split."""

    format: str = "gss"  # gss | manifest | folder | synthetic-gss | pa100k | peta | rap | wider | par-pickle | synthetic-par
    # manifest: multiclass (one class name per cell) or multilabel (binary attributes, cells 1/0/-1/empty)
    task: Literal["multiclass", "multilabel"] = "multiclass"
    attribute_file: Path | None = None  # multilabel: YAML/JSON of attribute names and one sentence each
    root: Path | None = None  # dataset root (gss, folder) or base folder for relative manifest paths
    attributes: list[str] = Field(default_factory=list)  # label columns to predict; [] = format default
    train_manifest: Path | None = None  # manifest format: CSV/Parquet of the train images
    test_manifest: Path | None = None
    val_manifest: Path | None = None  # optional: otherwise a stratified split of train
    # manifest format: a column of train / val / test, so one manifest (train_manifest)
    # holds every split; then test_manifest / val_manifest are not given.
    split_column: str | None = None
    path_column: str = "img_path"
    # fail: the first unusable image stops the run, naming it; skip: unusable images are
    # left out (each decoded once up front) and listed in RUN_DIR/skipped_images.csv.
    on_bad_image: Literal["fail", "skip"] = "fail"
    # Label tables: auto = UTF-8 (with or without BOM) or UTF-16 with BOM; anything else
    # is an error naming the byte, unless an encoding is named here (latin-1, cp1252 ...).
    encoding: str = "auto"
    # Image paths in tables must stay inside data.root (or the table's folder): a hostile
    # manifest cannot make a run read ../../etc/... True allows paths anywhere.
    allow_outside_root: bool = False

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        if v != "auto":
            import codecs

            try:
                codecs.lookup(v)
            except LookupError:
                raise ValueError(f"'{v}' is not an encoding Python knows; use auto, utf-8, latin-1, cp1252 ...") from None
        return v
    templates: dict[str, str] = Field(default_factory=dict)  # attribute -> prompt template (manifest/folder)
    class_words: dict[str, dict[str, str]] = Field(default_factory=dict)  # attribute -> class -> prompt words
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    # manifest format: a column (e.g. track) whose rows the drawn validation split keeps
    # together, all of a group on one side (data/splits.py group_split); null = stratified rows
    val_group_column: str | None = Field(None, min_length=1)
    shots: int | None = Field(None, ge=1)  # K-shot training subset (per class of the first attribute)
    split_seed: int = 42
    # format benchmark: which data set (imagenet, caltech101, oxford_pets, ... docs/benchmarks.md);
    # its K-shot subsets are Dassl's for the seed data.split_seed.
    dataset: str | None = None
    # Base-to-novel (CoCoOp): the labels sorted, the first ceil(n / 2) are base, the rest novel,
    # each relabelled from 0. all = every class.
    class_subset: Literal["all", "base", "novel"] = "all"
    # Drop the classes no split has an image of (one single-label attribute), relabelled from 0:
    # ImageNet-A / -R then hold their 200 classes, scored 200-way as in the papers.
    # null = true for format benchmark, false for the others.
    restrict_to_present_classes: bool | None = None
    synthetic: dict[str, Any] = Field(default_factory=dict)  # options of the synthetic renderer
    # Pedestrian-attribute readers (pa100k, peta, rap, wider, par-pickle): split_index,
    # uncertain (ignore|negative), annotation, image_dir, check_images; validated by
    # clipadapt.data.par.options.ParOptions when the reader runs.
    par: dict[str, Any] = Field(default_factory=dict)


class FeatureConfig(_Strict):
    """The on-disk feature store used when the method's backbone part is frozen."""

    cache: Literal["auto", "off"] = "auto"
    dir: Path | None = None  # default: $CLIPADAPT_CACHE or ~/.cache/clipadapt/features
    train_views: int = Field(1, ge=1)  # augmented views stored per train image; one is drawn per epoch
    batch_size: int = Field(64, ge=1)


class TrainConfig(_Strict):
    """The optimisation recipe (defaults: the CLIP-MHAdapter authors' configuration; a
    method may bring its own for the keys a config leaves unset, e.g. linear_probe lr 1e-2)."""

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = Field(0.9, ge=0.0, le=1.0)
    batch_size: int = Field(256, ge=1)  # unset: 16-256, for >= 8 steps per epoch (clipadapt.engine.defaults)
    epochs: int = Field(100, ge=0)
    warmup_epochs: int = Field(5, ge=0)
    warmup_lr: float = Field(1e-5, ge=0)
    min_lr: float = Field(0.0, ge=0)
    # early stopping: epochs in which neither the validation monitor nor the validation loss
    # improved (a tie in the monitor selects the lower loss); null = off
    patience: int | None = Field(10, ge=1)
    # auto: macro_f1 for single-label tasks, mA for multi-label ones
    monitor: Literal[MONITORS] = "auto"  # one of clipadapt.metrics.table.METRICS
    # auto: ce for single-label tasks, weighted_bce (positives exp(1-r), negatives exp(r)) for multi-label
    loss: Literal["auto", "ce", "weighted_ce", "class_balanced", "focal", "bce", "weighted_bce"] = "auto"
    threshold: float = Field(0.5, gt=0, lt=1)  # multi-label: positive when p > threshold (metrics, predict)
    # multi-label decision thresholds, one per attribute: fixed (train.threshold for all), or
    # chosen on the validation split (never test) to maximise each attribute's F1 (f1) or its
    # balanced accuracy, mA's per-attribute term (balanced); engine/thresholds.py
    thresholds: Literal["fixed", "f1", "balanced"] = "fixed"
    focal_gamma: float = Field(2.0, ge=0.0)
    cb_beta: float = Field(0.999, ge=0.0, lt=1.0)
    grad_clip: float | None = Field(None, gt=0)
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    end_to_end: bool = False  # run the backbone every step (exact augmentation) instead of the feature store
    num_workers: int = Field(0, ge=0)
    eval_batch_size: int = Field(256, ge=1)
    # temperature: after selection, fit one temperature per attribute on the validation split
    # (never test) so that probabilities match observed frequencies (engine/calibrate.py);
    # platt (multi-label): a scale and a bias per attribute, for a shifted model; decisions
    # stay the ones train.thresholds chose (the thresholds move with the probabilities)
    calibrate: Literal["none", "temperature", "platt"] = "none"
    # CPU threads for torch: auto (a fair share of the cores, re-read while the run goes),
    # N (fixed), or torch (torch's own choice); CLIPADAPT_THREADS overrides (clipadapt/threads.py)
    threads: int | Literal["auto", "torch"] = "auto"

    @field_validator("betas")
    @classmethod
    def _betas_range(cls, v):
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"Adam's betas must each be in [0, 1), got {list(v)}")
        return v

    @field_validator("threads")
    @classmethod
    def _threads_at_least_one(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError(f"threads must be at least 1, or auto / torch; got {v}")
        return v

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?", v):
            raise ValueError(f"'{v}' is not a device; use auto, cpu, cuda, cuda:N or mps")
        return v

    @model_validator(mode="after")
    def _schedule_fits(self):
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) is above lr ({self.lr}): the cosine schedule decays from lr to min_lr")
        return self


class MethodConfig(_Strict):
    """The method and its own settings (validated by the method's parameter model)."""

    name: str = "mhadapter"
    params: dict[str, Any] = Field(default_factory=dict)


class RunConfig(_Strict):
    """Everything a `clipadapt train` run needs."""

    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)

    @field_validator("method", mode="before")
    @classmethod
    def _method_shorthand(cls, v):
        return {"name": v} if isinstance(v, str) else v


def _suggest(loc: tuple, model: type[BaseModel]) -> str:
    """'Did you mean' for an unknown key at `loc`, walking nested models."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type):
            return ""
        current = field.annotation
    known = list(getattr(current, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f" Did you mean '{close[0]}'?" if close else f" Known keys: {', '.join(known)}."


def validate_config(raw: dict, source: str = "config", check: bool = True) -> RunConfig:
    """Validate a raw dict into a RunConfig; errors name the key and suggest a fix.

    With `check`, names and values that need the registries or the backbone's shape are
    checked too (clipadapt.config_checks), so every settings mistake surfaces here,
    before any work starts.
    """
    try:
        cfg = RunConfig.model_validate(raw or {})
    except ValidationError as exc:
        lines = []
        for key, err in plain_errors(exc):
            if err["type"] == "extra_forbidden":
                lines.append(f"unknown key '{key}'.{_suggest(err['loc'], RunConfig)}")
            elif err["type"] in ("model_type", "dict_type"):
                lines.append(f"'{key}' is a section, not a value (got {err.get('input')!r}); write its settings "
                             f"indented under it, e.g. '{key}:' then '  name: ...'")
            else:
                lines.append(describe_error(key, err))
        raise ClipAdaptError(f"Invalid {source}: " + "; ".join(lines)) from None
    if check:
        from clipadapt.config_checks import check_settings

        check_settings(cfg, source)
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split 'train.lr=1e-3' into (['train', 'lr'], 0.001); the value is read as YAML."""
    if "=" not in text:
        raise ClipAdaptError(f"--set expects key=value (e.g. train.lr=1e-3), got '{text}'.")
    key, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ClipAdaptError(f"--set {text}: the value is not valid YAML ({' '.join(str(exc).split())}).") from None
    if isinstance(parsed, str):  # YAML reads 1e-3 as a string; numbers are what users mean
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip().split("."), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply dotted key=value overrides to a raw config dict (in place) and return it.
    Switching the method (`method.name=...`) drops the params the new method does not take."""
    for text in overrides:
        keys, value = parse_override(text)
        if keys in (["method", "name"], ["method"]) and isinstance(value, str):
            drop_foreign_params(raw, value, f"--set {text}")
        set_setting(raw, keys, value, f"--set {text}")
    return raw


def drop_foreign_params(raw: dict, new_method: str, where: str) -> None:
    """Before switching a config to `new_method`: drop (with a warning) the method.params of
    the previous method that `new_method` does not take, so that trying another method is
    one override. An unknown method name is left for the config check to name."""
    method = raw.get("method")
    params = method.get("params") if isinstance(method, dict) else None
    if not isinstance(params, dict) or not params or method.get("name") == new_method:
        return
    from clipadapt.methods import METHODS

    if new_method not in METHODS:
        return
    known = METHODS.get(new_method).Params.model_fields
    foreign = [key for key in params if key not in known]
    for key in foreign:
        del params[key]
    if foreign:
        warnings.warn(f"{where}: dropped method.params {', '.join(foreign)} of method "
                      f"'{method.get('name', MethodConfig.model_fields['name'].default)}' ('{new_method}' does not take them).",
                      ClipAdaptWarning, stacklevel=3)


def set_setting(raw: dict, keys: list[str], value: Any, where: str) -> None:
    """raw[keys[0]][keys[1]]... = value, making sections as needed (in place); `where`
    names the setting in the error when a key on the way is a value, not a section."""
    if isinstance(raw.get("method"), str):  # the `method: coop` shorthand
        raw["method"] = {"name": raw["method"]}
    node = raw
    for k in keys[:-1]:
        if node.get(k) is None:
            node[k] = {}
        if not isinstance(node[k], dict):
            raise ClipAdaptError(f"{where}: '{k}' is a value, not a section.")
        node = node[k]
    node[keys[-1]] = value


def load_config(path: Path | str | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or none: all defaults), apply overrides, validate."""
    raw = read_config_file(path) if path is not None else {}
    return validate_overridden(raw, overrides or [], source=str(path) if path else "settings")


def read_config_file(path: Path | str) -> dict:
    """A YAML config file's raw settings, its relative data paths made relative to the file
    (so configs travel); not yet validated."""
    path = Path(path)
    if not path.is_file():
        raise ClipAdaptError(f"Config file not found: {path}. Pass the path of a YAML file (see configs/).")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        raise ClipAdaptError(f"Config file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError as exc:
        raise ClipAdaptError(f"Config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    if not isinstance(raw, dict):
        raise ClipAdaptError(f"Config file {path} must hold a mapping of sections (backbone, data, method, train).")
    _resolve_relative_paths(raw, path.parent)
    return raw


def validate_overridden(raw: dict, overrides: list[str], source: str) -> RunConfig:
    """Apply --set overrides to `raw` and validate. A problem that an override brings in is
    reported as that override's ("Invalid --set train.lr=abc: ..."), not as the file's."""
    import copy

    try:
        return validate_config(apply_overrides(copy.deepcopy(raw), overrides), source=source)
    except ClipAdaptError as problem:
        if not overrides:
            raise
        try:
            validate_config(copy.deepcopy(raw), source=source)
        except ClipAdaptError:
            raise problem from None  # the file itself is wrong: say so, as before
        current = copy.deepcopy(raw)
        for text in overrides:  # the file is fine: the first override that breaks it is named
            apply_overrides(current, [text])
            validate_config(copy.deepcopy(current), source=f"--set {text}")
        raise


def _resolve_relative_paths(raw: dict, base: Path) -> None:
    data = raw.get("data")
    if not isinstance(data, dict):
        return
    for key in ("root", "train_manifest", "test_manifest", "val_manifest", "attribute_file"):
        value = data.get(key)
        if isinstance(value, str) and value and not Path(os.path.expanduser(value)).is_absolute():  # unknown ~user: as written
            data[key] = str((base / value).resolve())


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader (plain data only: tags such as !!python/object are refused) that
    also refuses a key written twice in one mapping, which plain YAML resolves silently
    by keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool, type(None))):
                continue  # the safe loader itself refuses unhashable keys, with its own message
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one section (lines {seen[key]} and "
                    f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (written to every run folder)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
