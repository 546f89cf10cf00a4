"""A benchmark protocol file (`clipadapt bench PROTOCOL.yaml`) and the grid of cells it asks for.

Three protocols, as the CLIP-adaptation papers run them (docs/benchmarks.md):
- few_shot: every method x data set x K shots x seed trains on K images per class and
  is scored on the data set's test split (CoOp's table and curves);
- base_to_novel: trains on the base classes (K shots) and is scored on the base and on the
  novel test classes; the table adds the harmonic mean H (CoCoOp);
- transfer: trains on `source` and is scored on the source and every other data set's test
  split with that data set's class names (cross-data-set and domain generalisation).

Each cell is one run folder under OUT; its settings are, later winning: the `config` file,
`set`, train.epochs from `epochs` for its K, the data set's settings, the method's settings,
the cell's own (data.shots, data.split_seed = train.seed = the seed, data.class_subset), then
the command line's --set. Relative paths in the protocol are relative to its file.
A method that neither trains nor depends on the images (zeroshot) is one cell per data set.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from clipadapt.config import (
    RunConfig, _resolve_relative_paths, apply_overrides, load_config, set_setting, validate_config,
)
from clipadapt.errors import ClipAdaptError
from clipadapt.validation import describe_errors

PROTOCOLS = ("few_shot", "base_to_novel", "transfer")
# CoOp's epochs per K (its configs/trainers/CoOp/*_ep50 ... _ep200); ImageNet trains 50 at every K.
COOP_EPOCHS = {1: 50, 2: 100, 4: 100, 8: 200, 16: 200}
Settings = dict[str, Any]


class ProtocolFile(BaseModel):
    """The protocol file's keys (extra keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    protocol: Literal["few_shot", "base_to_novel", "transfer"] = "few_shot"
    config: Path | None = None  # a run config every cell starts from, relative to the protocol file
    set: Settings = Field(default_factory=dict)
    methods: list[str] | dict[str, Settings | None]
    datasets: list[str] | dict[str, Settings | None]
    shots: int | list[int] | None = None  # few_shot: [1, 2, 4, 8, 16]; the others: 16
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3])
    epochs: dict[int, int] = Field(default_factory=lambda: dict(COOP_EPOCHS))
    source: str | None = None  # transfer: the data set trained on (one of datasets)

    @field_validator("shots")
    @classmethod
    def _positive_shots(cls, v):
        for k in [v] if isinstance(v, int) else v or []:
            if k < 1:
                raise ValueError(f"shots must be whole numbers >= 1, got {k}")
        return v


@dataclass(frozen=True)
class Cell:
    """One run of the grid: where it goes, what trains, what it is scored on.

    evaluations: name -> config of the data it is scored on besides its own test split
    ("novel" for base-to-novel, the target data sets for transfer)."""

    dataset: str
    method: str
    shots: int | None
    seed: int | None
    folder: Path
    config: RunConfig
    evaluations: dict[str, RunConfig] = field(default_factory=dict)

    @property
    def label(self) -> str:
        shots = "zero-shot" if self.shots is None else f"{self.shots}-shot seed {self.seed}"
        return f"{self.dataset} / {self.method} / {shots}"


@dataclass
class Protocol:
    kind: str
    methods: dict[str, Settings]
    datasets: dict[str, Settings]
    shots: list[int]
    seeds: list[int]
    source: str | None
    cells: list[Cell]

    @property
    def targets(self) -> list[str]:
        """transfer: the data sets scored besides the source."""
        return [d for d in self.datasets if d != self.source]


def read_protocol(path: Path, overrides: list[str] | None = None) -> Protocol:
    """Read and validate a protocol file and build every cell's config (so a mistake in any
    cell is reported before the first one runs). `overrides` ("key=value") join `set`."""
    path = Path(path)
    raw = _read_yaml(path)
    try:
        spec = ProtocolFile.model_validate(raw)
    except ValidationError as exc:
        raise ClipAdaptError(f"Invalid protocol {path}: {describe_errors(exc)}.") from None
    base_file = spec.config if spec.config is None or spec.config.is_absolute() else path.parent / spec.config
    base = _base_config(base_file)
    everywhere = _flat(spec.set, "set", path)
    methods = _named(spec.methods, "methods", path)
    datasets = _named(spec.datasets, "datasets", path)
    shots = _shots(spec, path)
    missing = [k for k in shots if k not in spec.epochs]
    if missing:
        raise ClipAdaptError(f"{path}: epochs has no entry for {missing[0]} shots; give one per K in shots "
                             f"(CoOp's: {COOP_EPOCHS}).")
    source = _source(spec, datasets, path)
    _check_methods(spec.protocol, methods, path)
    builder = _CellBuilder(base, everywhere, spec.epochs, path, overrides or [])
    cells = []
    trained_on = [source] if spec.protocol == "transfer" else list(datasets)
    for dataset in trained_on:
        for method, method_settings in methods.items():
            cells += builder.cells(spec.protocol, dataset, datasets, method, method_settings, shots, spec.seeds)
    return Protocol(spec.protocol, methods, datasets, shots, list(spec.seeds), source, cells)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ClipAdaptError(f"Protocol file not found: {path}. docs/benchmarks.md shows one.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ClipAdaptError(f"Protocol file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ClipAdaptError(f"Protocol file {path} must hold a mapping (protocol, methods, datasets, shots, seeds ...).")
    return raw


def _base_config(path: Path | None) -> dict:
    """The raw settings of the protocol's `config` file (validated once as it stands)."""
    if path is None:
        return {}
    load_config(path)  # its own mistakes are reported as the file's
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    _resolve_relative_paths(raw, Path(path).parent)
    return raw


def _flat(settings: Settings | None, where: str, path: Path, prefix: str = "") -> Settings:
    """{"data": {"root": x}} and {"data.root": x} alike -> {"data.root": x}."""
    out: Settings = {}
    for key, value in (settings or {}).items():
        dotted = f"{prefix}{key}"
        if not isinstance(key, str) or not key:
            raise ClipAdaptError(f"{path}: {where} has a key that is not a setting name ({key!r}).")
        if isinstance(value, dict) and value:
            out.update(_flat(value, where, path, dotted + "."))
        else:
            out[dotted] = value
    return out


def _named(entries, where: str, path: Path) -> dict[str, Settings]:
    if not entries:
        raise ClipAdaptError(f"{path}: {where} is empty; name at least one.")
    if isinstance(entries, list):
        if len(set(entries)) != len(entries):
            raise ClipAdaptError(f"{path}: {where} names one entry twice.")
        return {name: {} for name in entries}
    return {name: _flat(settings, f"{where}.{name}", path) for name, settings in entries.items()}


def _shots(spec: ProtocolFile, path: Path) -> list[int]:
    if spec.shots is None:
        return [1, 2, 4, 8, 16] if spec.protocol == "few_shot" else [16]
    shots = [spec.shots] if isinstance(spec.shots, int) else list(spec.shots)
    if spec.protocol != "few_shot" and len(shots) != 1:
        raise ClipAdaptError(f"{path}: protocol {spec.protocol} trains with one K (shots: 16 in the papers), "
                             f"not {shots}.")
    if not shots or len(set(shots)) != len(shots):
        raise ClipAdaptError(f"{path}: shots must list each K once (e.g. [1, 2, 4, 8, 16]).")
    return shots


def _source(spec: ProtocolFile, datasets: dict, path: Path) -> str | None:
    if spec.protocol != "transfer":
        if spec.source is not None:
            raise ClipAdaptError(f"{path}: source is for protocol transfer (this one is {spec.protocol}).")
        return None
    if spec.source not in datasets:
        raise ClipAdaptError(f"{path}: protocol transfer needs source, the data set trained on, one of datasets "
                             f"({', '.join(datasets)}); got {spec.source!r}.")
    if len(datasets) < 2:
        raise ClipAdaptError(f"{path}: protocol transfer needs at least one data set besides the source.")
    return spec.source


def _check_methods(kind: str, methods: dict[str, Settings], path: Path) -> None:
    """base_to_novel and transfer score classes a run never trained on: only methods whose
    classifier comes from the class names can (engine.class_lists)."""
    from clipadapt.engine.class_lists import TEXT_METHODS
    from clipadapt.methods import METHODS

    if kind == "few_shot":
        return
    for label, settings in methods.items():
        name = settings.get("method.name", label)
        if name in METHODS and not METHODS.get(name).scores_any_classes:
            raise ClipAdaptError(f"{path}: method '{label}' has a trained output per class, so it cannot be scored on "
                                 f"classes it was not trained on ({kind}); remove it, or use one whose classifier comes "
                                 f"from the class names ({TEXT_METHODS}).")


def needs_no_training(config: RunConfig) -> bool:
    """zeroshot: no training and nothing per class, so neither K nor the seed changes it."""
    from clipadapt.methods import METHODS

    cls = METHODS.get(config.method.name)
    return not cls.trains and cls.scores_any_classes


class _CellBuilder:
    def __init__(self, base: dict, everywhere: Settings, epochs: dict[int, int], path: Path, overrides: list[str]):
        self.base, self.everywhere, self.epochs, self.path = base, everywhere, epochs, path
        self.overrides = overrides  # --set: applied last, paths relative to the working folder

    def config(self, dataset: str, dataset_settings: Settings, method: str, method_settings: Settings,
               cell: Settings, source: str, epochs: int | None = None) -> RunConfig:
        """A cell's config: the base file, then (later winning) set, the epochs of its K, the
        data set's settings, the method's, the cell's own."""
        raw = copy.deepcopy(self.base)
        fmt = dataset_settings.get("data.format", self.everywhere.get("data.format",
                                                                      (raw.get("data") or {}).get("format", "benchmark")))
        settings: Settings = {"data.format": fmt, **self.everywhere}
        if epochs is not None:
            settings["train.epochs"] = epochs
        if fmt == "benchmark":
            settings["data.dataset"] = dataset  # the label names the data set unless its settings say otherwise
        settings.update({**dataset_settings, "method.name": method, **method_settings, **cell})
        for key, value in settings.items():
            set_setting(raw, key.split("."), copy.deepcopy(value), f"{self.path}: setting {key}")
        _resolve_relative_paths(raw, self.path.parent)  # the protocol's paths: relative to its file
        return validate_config(apply_overrides(raw, self.overrides), source=f"{self.path} ({source})")

    def cells(self, kind: str, dataset: str, datasets: dict[str, Settings], method: str, method_settings: Settings,
              shots: list[int], seeds: list[int]) -> list[Cell]:
        subset = {"data.class_subset": "base"} if kind == "base_to_novel" else {}
        prefix = "base-" if kind == "base_to_novel" else ""
        where = f"{dataset} / {method}"
        probe = self.config(dataset, datasets[dataset], method, method_settings, subset, where)
        if needs_no_training(probe):
            grid = [(None, None, subset, f"{prefix}zero-shot")]
        else:
            grid = [(k, s, {**subset, "data.shots": k, "data.split_seed": s, "train.seed": s}, f"{prefix}{k}shot-seed{s}")
                    for k in shots for s in seeds]
        out = []
        for k, s, cell, name in grid:
            config = self.config(dataset, datasets[dataset], method, method_settings, cell, where,
                                 epochs=None if k is None else self.epochs[k])
            evaluations = {}
            if kind == "base_to_novel":
                evaluations["novel"] = config.model_copy(
                    update={"data": config.data.model_copy(update={"class_subset": "novel"})})
            elif kind == "transfer":
                for target in datasets:
                    if target != dataset:
                        evaluations[target] = self.config(target, datasets[target], method, method_settings,
                                                          {}, f"{target} / {method}")
            out.append(Cell(dataset, method, k, s, Path(dataset) / method / name, config, evaluations))
        return out
