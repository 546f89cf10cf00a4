"""The verdict of each cell (method x data set x metric): our mean ± sd over the seeds
against the published figure.

The rule (RULE, printed with every comparison): "within" when |ours - published| <=
max(2 sd, 0.5 points), else "above" or "below". With one seed the spread is unknown and
the 0.5-point floor alone is the tolerance; so it is for a method that does not train
(zeroshot: one run). A data set whose seeds spread by more than 2 points (sd > 2, as
DTD and EuroSAT often do at few shots) is flagged "wide spread": a single paper figure
there says little. Base-to-novel's H is, as CoCoOp computes it, the harmonic mean of the
mean base and mean novel accuracy; its spread is the sd of the per-seed H.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clipadapt.metrics.aggregate import mean_std
from clipadapt.protocols.tables import harmonic_mean
from clipadapt.reproduce.measure import Key, Measured
from clipadapt.reproduce.recipe import Blocked
from clipadapt.reproduce.tables import PaperTable

FLOOR = 0.5  # points: below this, a difference is rounding, preprocessing and library versions
SPREAD = 2.0  # tolerance in sds of the seeds
WIDE = 2.0  # points of sd above which a data set's seeds are flagged "wide spread"
RULE = (f"within: |ours - published| <= max({SPREAD:g} x sd over the seeds, {FLOOR} points); else above / below. "
        f"One seed (or a method that does not train): the spread is unknown and the {FLOOR}-point floor alone "
        f"applies. 'wide spread': the seeds' sd exceeds {WIDE:g} points.")


@dataclass
class Row:
    """One line of the comparison (figures in percent)."""

    method: str
    dataset: str
    metric: str
    values: list[float]
    mean: float | None
    sd: float | None  # None: one value, spread unknown
    published: float | None
    difference: float | None
    tolerance: float | None
    verdict: str  # within | above | below | no published figure | not run | left out (--methods / --datasets)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)


def verdict(mean: float, sd: float | None, published: float) -> tuple[float, str]:
    """(tolerance, verdict) of one figure by RULE."""
    tolerance = max(SPREAD * sd, FLOOR) if sd is not None else FLOOR
    difference = mean - published
    if abs(difference) <= tolerance:
        return tolerance, "within"
    return tolerance, "above" if difference > 0 else "below"


def compare(table: PaperTable, measured: dict[Key, Measured], blocked: list[Blocked],
            methods: list[str], datasets: list[str]) -> list[Row]:
    """Every published cell, then every measured one the table has no figure for."""
    measured = dict(measured)
    if table.kind == "base_to_novel":
        _add_h(measured)
    published = set(table.cells)
    keys = list(table.cells) + [k for k in measured if k not in published and k[2] in table.metrics]
    keys.sort(key=_order(table, keys, methods, datasets))  # method, then data set, then metric
    rows = [_row(table, key, measured.get(key), blocked, methods, datasets) for key in keys]
    wide = {r.dataset for r in rows if r.sd is not None and r.sd > WIDE}
    for row in rows:
        if row.dataset in wide:
            row.notes.append(f"wide spread: {row.dataset}'s seeds differ by more than {WIDE:g} points (sd)")
    return rows


def _order(table: PaperTable, keys: list[Key], methods: list[str], datasets: list[str]):
    """Sort key: the recipe's order of methods and data sets, the table's of metrics; a name
    the recipe no longer has (left out) after, in order of appearance."""
    ranks = [{m: i for i, m in enumerate(methods)}, {d: i for i, d in enumerate(datasets)},
             {m: i for i, m in enumerate(table.metrics)}]
    for key in keys:
        for rank, name in zip(ranks[:2], key[:2]):
            rank.setdefault(name, len(rank))
    return lambda key: tuple(rank.get(name, len(rank)) for rank, name in zip(ranks, key))


def _row(table: PaperTable, key: Key, found: Measured | None, blocked: list[Blocked], methods: list[str],
         datasets: list[str]) -> Row:
    method, dataset, metric = key
    published = table.figure(*key)
    notes = []
    unchecked = table.unchecked_note(*key)
    if unchecked:
        notes.append(f"figure not checked against the paper: {unchecked}")
    if method not in methods or dataset not in datasets:
        return Row(method, dataset, metric, [], None, None, published, None, None, "left out", [])
    if found is None or not found.values:
        reasons = [b.missing.reason for b in blocked if (b.method, b.dataset) == (method, dataset)]
        return Row(method, dataset, metric, [], None, None, published, None, None, "not run",
                   notes + [f"not run: {r}" for r in reasons or ["no value: the metric is undefined for these runs"]])
    summary = mean_std(found.values)
    mean = summary["mean"] if found.mean is None else found.mean
    sd = summary["std"] if summary["n"] > 1 else None
    if sd is None:
        notes.append("one seed: spread unknown" if found.trains else "one run: the method does not train")
    if published is None:
        return Row(method, dataset, metric, found.values, mean, sd, None, None, None, "no published figure", notes)
    tolerance, said = verdict(mean, sd, published)
    return Row(method, dataset, metric, found.values, mean, sd, published, mean - published, tolerance, said, notes)


def _add_h(measured: dict[Key, Measured]) -> None:
    """(method, data set, "H") from the base and novel entries (in place)."""
    for (method, dataset, metric), base in list(measured.items()):
        novel = measured.get((method, dataset, "novel"))
        if metric != "base" or novel is None:
            continue
        per_seed = dict(zip(novel.seeds, novel.values))
        h = Measured(trains=base.trains)  # per-seed values for the spread; the figure is CoCoOp's
        for seed, b in zip(base.seeds, base.values):
            if seed in per_seed:
                h.values.append(harmonic_mean(b, per_seed[seed]))
                h.seeds.append(seed)
        h.mean = harmonic_mean(mean_std(base.values)["mean"], mean_std(novel.values)["mean"])
        measured[(method, dataset, "H")] = h
