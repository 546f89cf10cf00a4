"""A paper's table as data: one YAML file per table in reproduce/tables/ (package data).

The file says where the figures come from (paper, arXiv id, table number, how they were
checked), how to run the experiment (`recipe`), which metrics the figures give and the
figures themselves (`published`: method -> data set -> metric -> percent, or null where
the paper has none). `load_table` validates all of it strictly (pydantic, extra keys are
errors) and cross-checks the parts against each other, so a typo in a figure's data set
or a figure outside [0, 100] fails when the table is read, naming the file and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clipadapt.errors import ClipAdaptError
from clipadapt.metrics.table import METRICS
from clipadapt.validation import describe_errors

TABLES_DIR = Path(__file__).resolve().parent / "tables"
PROTOCOL_KINDS = ("few_shot", "base_to_novel", "transfer")  # run by `clipadapt bench`'s runner
KINDS = (*PROTOCOL_KINDS, "standard", "label_free")
BASE_TO_NOVEL = ("base", "novel", "H")
# Scores in percent a figure may be compared with: the metric table's (less the loss and
# the NLL, which are not fractions) and the instance scores a multi-label evaluation adds
# to metrics["mean"] (engine/trainer.py), which pedestrian-attribute papers report.
PERCENT_METRICS = tuple(m for m in METRICS if m not in ("loss", "nll")) + (
    "instance_accuracy", "instance_precision", "instance_recall", "instance_f1_of_means")
# Data paths in a recipe are relative to --data (a table never knows where the data is).
DATA_PATHS = ("data.root", "data.train_manifest", "data.test_manifest", "data.val_manifest", "data.attribute_file",
              "method.params.descriptions")
ARXIV = re.compile(r"^\d{4}\.\d{4,5}(v\d+)?$")

Figures = dict[str, dict[str, dict[str, float | None]]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Source(_Strict):
    """Where the figures are printed, and how they were checked against it."""

    paper: str = Field(min_length=1)
    arxiv: str = Field(pattern=ARXIV.pattern)
    table: str = Field(min_length=1)  # the table / figure number in that arXiv version
    checked: str = Field(min_length=1)
    # Where each filled figure was read: "cells: repository/path@commit or URL, and whether
    # it is the paper's own text or a second-hand copy". Every shipped figure has one.
    read_from: list[str] = Field(default_factory=list)


class PaperTable(_Strict):
    """One paper table (the file's keys; see docs/reproduce.md)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(min_length=1)
    source: Source
    kind: Literal["few_shot", "base_to_novel", "transfer", "standard", "label_free"]
    recipe: dict[str, Any]
    metrics: list[str] = Field(min_length=1)
    published: Figures
    unchecked: list[str] = Field(default_factory=list)

    @property
    def cells(self) -> list[tuple[str, str, str]]:
        """(method, data set, metric) of every published entry, in the file's order."""
        return [(m, d, k) for m, sets in self.published.items() for d, figures in sets.items() for k in figures]

    def figure(self, method: str, dataset: str, metric: str) -> float | None:
        return self.published.get(method, {}).get(dataset, {}).get(metric)

    def unchecked_note(self, method: str, dataset: str, metric: str) -> str | None:
        """Why this figure could not be checked against the paper (None: it was)."""
        prefix = f"{method}/{dataset}/{metric}:"
        return next((u.removeprefix(prefix).strip() for u in self.unchecked if u.startswith(prefix)), None)


class _StandardRecipe(_Strict):
    """kind standard / label_free: method x data set x seed, each one `train` / `adapt` run."""

    set: dict[str, Any] = Field(default_factory=dict)
    methods: list[str] | dict[str, dict[str, Any] | None]
    datasets: list[str] | dict[str, dict[str, Any] | None]
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)


@dataclass(frozen=True)
class TableFile:
    """A validated table and the file it came from."""

    table: PaperTable
    path: Path


def shipped_tables() -> list[Path]:
    """The table files that come with clipadapt, by name."""
    return sorted(TABLES_DIR.glob("*.yaml"))


def table_path(name_or_path: str | Path) -> Path:
    """A shipped table by NAME, or a table file by its path (a .yaml of your own)."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ClipAdaptError(f"Table file not found: {path}. `clipadapt reproduce --list` shows the shipped ones.")
        return path
    path = TABLES_DIR / f"{text}.yaml"
    if not path.is_file():
        from clipadapt.suggest import did_you_mean

        names = [p.stem for p in shipped_tables()]
        raise ClipAdaptError(f"No table named '{text}'; clipadapt has {', '.join(names) or 'none'}."
                             f"{did_you_mean(text, names)} `clipadapt reproduce --list` describes each.")
    return path


def load_table(name_or_path: str | Path) -> TableFile:
    """Read, validate and cross-check one table file."""
    path = table_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ClipAdaptError(f"Table {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ClipAdaptError(f"Table {path} must hold a mapping (name, title, source, kind, recipe, metrics, "
                             "published, unchecked).")
    try:
        table = PaperTable.model_validate(raw)
    except ValidationError as exc:
        raise ClipAdaptError(f"Invalid table {path}: {describe_errors(exc)}.") from None
    _check(table, path)
    return TableFile(table, path)


def _check(table: PaperTable, path: Path) -> None:
    """The parts of a table against each other; the first problem is one error."""
    def fail(key: str, problem: str) -> ClipAdaptError:
        return ClipAdaptError(f"Invalid table {path}: '{key}': {problem}")

    if table.name != path.stem:
        raise fail("name", f"is '{table.name}', but the file is {path.name}; the name is the file's stem "
                           f"(`clipadapt reproduce {path.stem}`).")
    allowed = BASE_TO_NOVEL if table.kind == "base_to_novel" else PERCENT_METRICS
    for metric in table.metrics:
        if metric not in allowed:
            raise fail("metrics", f"'{metric}' is not a metric a {table.kind} table can compare; use one of "
                                  f"{', '.join(allowed)}.")
    methods, datasets = recipe_names(table, path)
    for method, sets in table.published.items():
        if method not in methods:
            raise fail(f"published.{method}", f"the recipe runs no method '{method}' (it runs {', '.join(methods)}).")
        for dataset, figures in sets.items():
            if dataset not in datasets:
                raise fail(f"published.{method}.{dataset}",
                           f"the recipe has no data set '{dataset}' (it has {', '.join(datasets)}).")
            for metric, figure in figures.items():
                key = f"published.{method}.{dataset}.{metric}"
                if metric not in table.metrics:
                    raise fail(key, f"'{metric}' is not one of the table's metrics ({', '.join(table.metrics)}).")
                if figure is not None and not 0 <= figure <= 100:
                    raise fail(key, f"{figure} is outside [0, 100]; figures are in percent.")
    cells = {f"{m}/{d}/{k}" for m, d, k in table.cells}
    for i, entry in enumerate(table.unchecked):
        cell, _, why = entry.partition(":")
        if cell.strip() not in cells or not why.strip():
            raise fail(f"unchecked[{i}]", f"{entry!r} must read 'method/dataset/metric: why', naming a published "
                                          "entry.")


def recipe_names(table: PaperTable, path: Path) -> tuple[list[str], list[str]]:
    """The recipe's method and data set names, once its shape is checked."""
    recipe = table.recipe
    from clipadapt.protocols.protocol import ProtocolFile, _flat

    if table.kind in PROTOCOL_KINDS:
        try:
            spec = ProtocolFile.model_validate({"protocol": table.kind, **recipe})
        except ValidationError as exc:
            raise ClipAdaptError(f"Invalid table {path}: {describe_errors(exc, 'recipe.')}.") from None
        if spec.protocol != table.kind:
            raise ClipAdaptError(f"Invalid table {path}: 'recipe.protocol' is {spec.protocol}, the table's kind "
                                 f"{table.kind}; leave it out.")
        if spec.config is not None:
            raise ClipAdaptError(f"Invalid table {path}: 'recipe.config': a table's recipe holds its settings itself "
                                 "(in set, methods, datasets); it names no config file.")
        shots = spec.shots if isinstance(spec.shots, list) else [spec.shots]
        if len(shots) != 1 or shots[0] is None:
            raise ClipAdaptError(f"Invalid table {path}: 'recipe.shots' must be one K (a paper table is one K), "
                                 f"got {spec.shots}.")
        methods, datasets, settings = spec.methods, spec.datasets, {"recipe.set": spec.set}
    else:
        try:
            spec = _StandardRecipe.model_validate(recipe)
        except ValidationError as exc:
            raise ClipAdaptError(f"Invalid table {path}: {describe_errors(exc, 'recipe.')}.") from None
        methods, datasets, settings = spec.methods, spec.datasets, {"recipe.set": spec.set}
    for group, name in ((methods, "methods"), (datasets, "datasets")):
        if isinstance(group, dict):
            settings.update({f"recipe.{name}.{label}": s for label, s in group.items()})
    for where, block in settings.items():
        for key, value in _flat(block, where, path).items():
            if key in DATA_PATHS and isinstance(value, str) and Path(value).expanduser().is_absolute():
                raise ClipAdaptError(f"Invalid table {path}: '{where}' sets {key} to {value}; data paths in a recipe "
                                     "are relative to --data (e.g. gss), never absolute.")
    return list(methods), list(datasets)

