"""`clipadapt demo --task city`: map a synthetic city's street views and check the map
against the pattern planted in it.

The walk a Global StreetScapes user takes, on data whose truth is known: render the city
(synthetic/city.py), train CLIP-MHAdapter on its labelled part with the street-view
demo's recipe (calibrated: the expected share is a mean of probabilities), predict the
held-out images with their uuid / lat / lon as `clipadapt predict` does, aggregate them
per H3 cell as `clipadapt aggregate` does, draw the map, and compare each cell's
predicted share of every planted class with its true share (Pearson r across cells).

Written under OUT:
    city-data/               the rendered city (train/, img/, city.csv, truth.csv)
    city-runs/mhadapter/     the run folder
    city-predictions.parquet GeoParquet, one row per held-out image
    city-cells.parquet       the aggregate (GeoParquet, one row per cell, attribute and class)
    city-map.html            the offline map
    city-truth.csv           per cell and planted class: true and predicted shares side by side
    city_summary.json        the correlations, held-out accuracy, counts and the time taken
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from clipadapt.run_files import RunFiles
from clipadapt.synthetic.city import PLANTED, CityPlan, write_city

CITY_PLAN = CityPlan()  # read at call time, so tests can shrink it
CITY_EPOCHS = None  # None: the street-view demo's DEMO_EPOCHS
ESTIMATORS = {"expected": "expected_share", "top": "top_share"}
TRUTHS = ("planted", "realised")


def pearson(a, b) -> float | None:
    """Pearson's r of two equal-length sequences; None when either does not vary."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    da, db = a - a.mean(), b - b.mean()
    denominator = np.sqrt((da ** 2).sum() * (db ** 2).sum())
    return None if denominator == 0 else float((da * db).sum() / denominator)


def compare_cells(aggregate_table, truth):
    """Truth and prediction side by side for each cell and planted class (the planted
    attributes' other classes are left out: the pattern speaks of one class each)."""
    truth = truth[[PLANTED[a] == c for a, c in zip(truth["attribute"], truth["class"])]]
    predicted = aggregate_table[["h3", "attribute", "class", "n", *ESTIMATORS.values()]]
    both = truth.merge(predicted, on=["h3", "attribute", "class"], how="left", suffixes=("", "_predicted"))
    return both.sort_values(["attribute", "h3"]).reset_index(drop=True)


def correlations(cells) -> dict:
    """Per planted attribute: r of each estimator's share with each truth across cells,
    and the same for a perfect labeller (its share is the realised one): r(realised,
    planted) is what even a labeller that is never wrong scores against the planted
    truth, whose cells' draws carry sampling noise; r(realised, realised) = 1 checks the
    arithmetic."""
    out = {}
    for attribute, class_name in PLANTED.items():
        rows = cells[cells["attribute"] == attribute]
        entry = {"class": class_name, "cells": int(len(rows)),
                 "truth_range": [round(float(rows["planted"].min()), 3), round(float(rows["planted"].max()), 3)]}
        for estimator, column in {**ESTIMATORS, "perfect": "realised"}.items():
            entry[estimator] = {truth: pearson(rows[column], rows[truth]) for truth in TRUTHS}
        # r ignores level: how far each map's shares sit from the realised ones, and to which side
        entry["error_vs_realised"] = {e: {"mean_abs": float((rows[c] - rows["realised"]).abs().mean()),
                                          "mean": float((rows[c] - rows["realised"]).mean())}
                                      for e, c in ESTIMATORS.items()}
        out[attribute] = entry
    return out


def held_out_accuracy(predictions, manifest) -> dict[str, float]:
    """Per planted attribute, the share of held-out images whose top class is their label."""
    labels = manifest.set_index("uuid")
    return {a: float((predictions[a].to_numpy() == labels.loc[predictions["uuid"], a].to_numpy()).mean())
            for a in PLANTED}


def correlation_table(summary: dict) -> Table:
    """The correlations as a rich table, three rows per planted class: the two estimators
    and a perfect labeller (the realised share: the ceiling against the planted truth)."""
    table = Table(title=f"Demo city: predicted vs true share of the planted class per H3 cell\n(Pearson r over "
                        f"{summary['cells']} cells of {summary['held_out_per_cell']} held-out images)",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("planted class", "true share", "estimator", "r vs\nplanted", "r vs\nrealised", "top-1\naccuracy"):
        table.add_column(col, justify="left" if col in ("planted class", "estimator") else "right",
                         no_wrap=col == "planted class")
    for attribute, entry in summary["correlations"].items():
        low, high = entry["truth_range"]
        table.add_row(attribute, f"{low:.2f}-{high:.2f}", "expected", *(_r(entry["expected"][t]) for t in TRUTHS),
                      f"{100 * summary['held_out_accuracy'][attribute]:.1f}%")
        table.add_row(f"  = {entry['class']}", "", "top", *(_r(entry["top"][t]) for t in TRUTHS), "")
        table.add_row("", "", "perfect", *(_r(entry["perfect"][t]) for t in TRUTHS), "", end_section=True)
    return table


def _r(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def train_city_model(out: Path, data: Path, progress: bool, console: Console) -> Path:
    """CLIP-MHAdapter with the street-view demo's recipe (temperature-calibrated on its
    validation fifth) on the city's labelled images; returns the run folder."""
    from clipadapt.backbone import open_backbone
    from clipadapt.cli import demo
    from clipadapt.config import validate_config
    from clipadapt.workflow import train_run

    params, train = demo.DEMO_METHODS["mhadapter"]
    spec = demo.DemoTask("Demo city", "gss", {}, {"mhadapter": (params, train)},
                         CITY_EPOCHS or demo.DEMO_EPOCHS, "crop", (), "macro_f1", "mhadapter")
    raw = demo.demo_config(spec, data, out / "cache", "mhadapter", params, train)
    run_dir = out / "city-runs" / "mhadapter"
    shutil.rmtree(run_dir.parent, ignore_errors=True)  # a re-run trains afresh; data and feature cache stay
    console.print("[bold]mhadapter[/] on the city's labelled images")
    train_run(validate_config(raw, source="demo"), run_dir, progress=progress,
              backbone=open_backbone("clipadapt-tiny", "embedded"))
    return run_dir


def run_city_demo(out: Path, progress: bool = True, console: Console | None = None) -> dict:
    """Render the city, train, predict the held-out images, aggregate per H3 cell, draw
    the map and compare with the truth; returns the summary (also city_summary.json)."""
    import pandas as pd

    from clipadapt.geo import aggregate
    from clipadapt.geo.map import render_map
    from clipadapt.geo.writers import write_aggregate
    from clipadapt.io import write_json, write_text
    from clipadapt.workflow.predict import PredictOptions, predict_run

    console = console or Console()
    out = Path(out)
    plan = CITY_PLAN
    started, load = time.perf_counter(), os.getloadavg()[0]  # the time depends on what else runs: say so
    console.print(f"rendering the city ({plan.size_km:g} km box, H3 resolution {plan.resolution}, "
                  f"{plan.per_cell} held-out images per cell, {plan.n_train} labelled)")
    data = write_city(out / "city-data", plan)
    rendered = time.perf_counter()
    run_dir = train_city_model(out, data, progress, console)
    trained = time.perf_counter()
    predictions = out / "city-predictions.parquet"
    # the held-out manifest as `clipadapt predict` reads it: uuid, lat and lon travel with the rows
    outcome = predict_run([str(data / "city.csv")], predictions, checkpoint=run_dir,
                          options=PredictOptions(batch_size=128), progress=progress)
    for line in outcome.lines:
        console.print(line, highlight=False)
    result = aggregate(predictions, [f"h3:{plan.resolution}"], attributes=list(PLANTED))
    write_aggregate(result, out / "city-cells.parquet")
    write_text(out / "city-map.html", render_map(result, title="Demo city: class shares per H3 cell "
                                                              f"(resolution {plan.resolution}), held-out images"))
    truth = pd.read_csv(data / "truth.csv", dtype={"h3": str})
    cells = compare_cells(result.table, truth)
    cells.to_csv(out / "city-truth.csv", index=False)
    manifest = pd.read_csv(data / "city.csv", dtype=str, keep_default_na=False)
    summary = {
        "plan": {**asdict(plan), "planted": PLANTED}, "cells": int(result.groups),
        "held_out_per_cell": plan.per_cell, "held_out": int(result.rows_used), "aggregate": result.summary(),
        "correlations": correlations(cells),
        "held_out_accuracy": held_out_accuracy(pd.read_parquet(predictions), manifest),
        "seconds": {"render": round(rendered - started, 1), "train": round(trained - rendered, 1),
                    "predict_aggregate_map": round(time.perf_counter() - trained, 1),
                    "total": round(time.perf_counter() - started, 1)},
        "machine": {"cpus": os.cpu_count(), "load_average_1min": [round(load, 2), round(os.getloadavg()[0], 2)],
                    "torch_threads": json.loads((run_dir / RunFiles.CARD).read_text()).get("cpu_threads")},
    }
    write_json(out / "city_summary.json", summary)
    console.print(correlation_table(summary))
    console.print("r: Pearson across cells of the planted class's share. expected: mean calibrated probability; "
                  "top: share of images it is the top class of. planted: the mean planted probability; realised: "
                  "the share drawn. perfect: a labeller that is never wrong (its share is the realised one).",
                  highlight=False)
    console.print(f"map: {out / 'city-map.html'}  (cells: {out / 'city-cells.parquet'}; summary: "
                  f"{out / 'city_summary.json'}; {summary['seconds']['total']:.0f} s)", highlight=False)
    return summary
