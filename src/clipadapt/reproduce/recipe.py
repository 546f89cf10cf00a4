"""A table's recipe as a plan: the runs it asks for, with the user's --data, --weights,
--set, --seeds and filters applied, split into the cells that can run here and those
that cannot (each with why and what would fetch it).

Every kind becomes a `clipadapt bench` Protocol, so one runner and one resume rule serve
them all: the protocol kinds (few_shot, base_to_novel, transfer) through `read_protocol`
on the recipe (written to OUT/recipe.yaml, the record of what ran), the others
(standard, label_free) as one cell per method x data set x seed, folder
OUT/<data set>/<method>/seed<S>, whose config is the recipe's settings, later winning:
set, the data set's, the method's, train.seed, then --weights and --set.
Data paths in a recipe are relative to --data; data.root defaults to --data itself.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from clipadapt.errors import ClipAdaptError
from clipadapt.protocols.protocol import Cell, Protocol, _flat, _named, read_protocol
from clipadapt.reproduce.availability import (
    Missing, data_missing, descriptions_missing, method_missing, weights_missing,
)
from clipadapt.reproduce.tables import DATA_PATHS, PROTOCOL_KINDS, TableFile

RECIPE_FILE = "recipe.yaml"


@dataclass(frozen=True)
class SeedCell(Cell):
    """A cell of a standard or label-free table: one `train` / `adapt` run of one seed."""

    @property
    def label(self) -> str:
        return f"{self.dataset} / {self.method} / seed {self.seed}"


@dataclass(frozen=True)
class Blocked:
    """A method x data set that cannot run here, and why."""

    method: str
    dataset: str
    missing: Missing


@dataclass
class Options:
    """What the command line adds to a table's recipe."""

    data: Path
    weights: str | None = None
    overrides: list[str] = field(default_factory=list)
    seeds: list[int] | None = None
    datasets: list[str] | None = None
    methods: list[str] | None = None


@dataclass
class Plan:
    """The runnable cells (as a bench Protocol) and the blocked ones."""

    source: TableFile
    protocol: Protocol
    blocked: list[Blocked]
    methods: list[str]
    datasets: list[str]

    @property
    def kind(self) -> str:
        return self.source.table.kind


def make_plan(source: TableFile, options: Options, out: Path) -> Plan:
    """The plan of one table (validates every cell's config before anything runs)."""
    table, path = source.table, source.path
    recipe = copy.deepcopy(table.recipe)
    methods = _chosen(_named(recipe["methods"], "recipe.methods", path), options.methods, "--methods")
    datasets = _chosen(_named(recipe["datasets"], "recipe.datasets", path), options.datasets, "--datasets")
    if table.kind == "transfer" and recipe.get("source") not in datasets:
        raise ClipAdaptError(f"--datasets must keep {recipe.get('source')}, the data set this transfer table trains on.")
    everywhere = _flat(recipe.get("set"), "recipe.set", path)
    data = Path(options.data).expanduser().resolve()
    everywhere.setdefault("data.root", ".")
    for block in (everywhere, *datasets.values(), *methods.values()):
        _under(block, data)
    named, blocked = list(methods), []
    for label, settings in list(methods.items()):
        missing = method_missing(settings.get("method.name", label))
        if missing:  # left out of the recipe, listed against every data set
            blocked += [Blocked(label, d, missing) for d in datasets]
            del methods[label]
    seeds = list(options.seeds or recipe.get("seeds") or [1, 2, 3])
    weights = options.weights
    if weights and Path(weights).expanduser().exists():  # a local file: absolute, so a resume elsewhere matches
        weights = str(Path(weights).expanduser().resolve())
    overrides = ([f"backbone.pretrained={weights}"] if weights else []) + list(options.overrides)
    recipe.update({"set": everywhere, "methods": methods, "datasets": datasets, "seeds": seeds})
    if not methods:
        protocol = Protocol(table.kind, {}, datasets, [], seeds, recipe.get("source"), [])
    elif table.kind in PROTOCOL_KINDS:
        protocol = _protocol(recipe, table.kind, out, overrides)
    else:
        protocol = _seed_cells(recipe, table.kind, path, overrides)
    runnable, more = _runnable(protocol, table.kind)
    return Plan(source, dataclasses.replace(protocol, cells=runnable), blocked + more, named, list(datasets))


def _chosen(named: dict, chosen: list[str] | None, option: str) -> dict:
    """The recipe's entries that --methods / --datasets keep (all without the option)."""
    if not chosen:
        return named
    unknown = [c for c in chosen if c not in named]
    if unknown:
        raise ClipAdaptError(f"{option}: '{unknown[0]}' is not in the table's recipe (it has {', '.join(named)}).")
    return {name: settings for name, settings in named.items() if name in chosen}


def _under(settings: dict, data: Path) -> None:
    """A recipe's data paths are relative to --data: make them absolute (in place)."""
    for key in DATA_PATHS:
        value = settings.get(key)
        if isinstance(value, str) and not Path(value).expanduser().is_absolute():
            settings[key] = str((data / value).resolve())


def _protocol(recipe: dict, kind: str, out: Path, overrides: list[str]) -> Protocol:
    """read_protocol on the recipe, written to OUT/recipe.yaml (its paths are absolute)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RECIPE_FILE
    path.write_text(yaml.safe_dump({"protocol": kind, **recipe}, sort_keys=False), encoding="utf-8")
    return read_protocol(path, overrides)


def _seed_cells(recipe: dict, kind: str, path: Path, overrides: list[str]) -> Protocol:
    """standard / label_free: one cell per data set x method x seed."""
    from clipadapt.config import apply_overrides, set_setting, validate_config

    cells = []
    for dataset, dataset_settings in recipe["datasets"].items():
        for method, method_settings in recipe["methods"].items():
            for seed in recipe["seeds"]:
                settings = {**recipe["set"], **dataset_settings, "method.name": method, **method_settings,
                            "train.seed": seed}
                if settings.get("data.format") == "benchmark":
                    settings.setdefault("data.dataset", dataset)  # the label names the set, as in a protocol
                raw: dict = {}
                for key, value in settings.items():
                    set_setting(raw, key.split("."), copy.deepcopy(value), f"{path}: setting {key}")
                config = validate_config(apply_overrides(raw, overrides), source=f"{path} ({dataset} / {method})")
                cells.append(SeedCell(dataset, method, None, seed, Path(dataset) / method / f"seed{seed}", config))
    return Protocol(kind, recipe["methods"], recipe["datasets"], [], list(recipe["seeds"]), None, cells)


def _runnable(protocol: Protocol, kind: str) -> tuple[list[Cell], list[Blocked]]:
    """The cells whose data and weights are here; the others as Blocked (one per method x
    data set and reason). A transfer cell keeps the targets that are here."""
    known: dict[tuple, Missing | None] = {}

    def missing_data(config) -> Missing | None:
        key = ("data", config.data.format, config.data.dataset, str(config.data.root),
               str(config.method.params.get("descriptions")))
        if key not in known:
            known[key] = data_missing(config.data) or descriptions_missing(config.method.params)
        return known[key]

    def missing_weights(config) -> Missing | None:
        key = ("weights", config.backbone.name, config.backbone.pretrained)
        if key not in known:
            known[key] = weights_missing(config.backbone)
        return known[key]

    runnable, blocked = [], {}
    for cell in protocol.cells:
        reasons = [m for m in (missing_data(cell.config), missing_weights(cell.config)) if m]
        for missing in reasons:
            blocked[(cell.method, cell.dataset, missing)] = None
        if kind == "transfer":
            kept = {}
            untrained = Missing(f"its runs train on {cell.dataset}, which cannot run here",
                                f"what {cell.dataset} needs (listed with it)")
            for target, config in cell.evaluations.items():
                lost = missing_data(config) or (untrained if reasons else None)
                if lost:
                    blocked[(cell.method, target, lost)] = None
                else:
                    kept[target] = config
            cell = dataclasses.replace(cell, evaluations=kept)
        if not reasons:
            runnable.append(cell)
    return runnable, [Blocked(*key) for key in blocked]
