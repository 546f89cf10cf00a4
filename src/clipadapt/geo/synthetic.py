"""Synthetic prediction tables with known class shares, for the tests, the scale
benchmark and the map screenshot.

Each image's probabilities are drawn from a Dirichlet whose mean is its city's class
mix, so they are calibrated by construction (an image with p(rainy) = 0.3 is rainy 30%
of the time) and their expected mean per city is exactly that mix: the expected share
should recover it, while the top-class share drifts toward each city's majority class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (lat, lon) of a city centre and its class mix per attribute
CITIES = {
    "singapore": ((1.3521, 103.8198), {"weather": (0.55, 0.30, 0.15, 0.0), "lighting": (0.7, 0.1, 0.2)}),
    "amsterdam": ((52.3676, 4.9041), {"weather": (0.25, 0.45, 0.25, 0.05), "lighting": (0.6, 0.15, 0.25)}),
    "nairobi": ((-1.2921, 36.8219), {"weather": (0.6, 0.3, 0.1, 0.0), "lighting": (0.75, 0.1, 0.15)}),
}
CLASSES = {"weather": ("clear", "cloudy", "rainy", "snowy"), "lighting": ("day", "dusk", "night")}


def calibrated_probabilities(rng: np.random.Generator, mix: np.ndarray, concentration: float = 2.0) -> np.ndarray:
    """[rows, classes] probabilities whose mean is `mix` ([rows, classes] or [classes]).
    A class with share 0 keeps a tiny mass (a model never says exactly 0)."""
    alpha = concentration * np.maximum(np.broadcast_to(mix, mix.shape), 1e-3)
    draws = rng.gamma(alpha)
    return draws / draws.sum(axis=-1, keepdims=True)


def synthetic_predictions(rows: int, seed: int = 0, spread_deg: float = 0.04, not_ok: float = 0.03,
                          dtype=np.float64):
    """A `clipadapt predict`-style table (pandas) of `rows` images in CITIES: path, ok,
    error, uuid, lat, lon, city, then per attribute the top class and p(<class>) columns.
    `not_ok` of the rows failed (ok = False, empty prediction, NaN probabilities)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    names = list(CITIES)
    city = rng.integers(0, len(names), rows)
    centre = np.asarray([CITIES[c][0] for c in names])[city]
    ok = rng.random(rows) >= not_ok
    table = {"path": [f"images/{i:07d}.jpg" for i in range(rows)], "ok": ok,
             "error": np.where(ok, "", "cannot identify image file"),
             "uuid": [f"{seed:04x}{i:012x}" for i in range(rows)],
             "lat": centre[:, 0] + rng.normal(0, spread_deg, rows), "lon": centre[:, 1] + rng.normal(0, spread_deg, rows),
             "city": np.asarray(names, dtype=object)[city]}
    for attribute, classes in CLASSES.items():
        mix = np.asarray([CITIES[c][1][attribute] for c in names])[city]
        probs = calibrated_probabilities(rng, mix).astype(dtype)
        top = np.asarray(classes, dtype=object)[probs.argmax(axis=1)]
        table[attribute] = np.where(ok, top, "")
        for k, cls in enumerate(classes):
            table[f"{attribute}:p({cls})"] = np.where(ok, probs[:, k], np.nan).astype(dtype)
    return pd.DataFrame(table)


def write_box_shards(folder: Path, rows: int, shard_rows: int = 500_000, classes: int = 8, seed: int = 0,
                     box: tuple[float, float, float, float] = (1.22, 103.6, 1.47, 104.05), districts: int = 50) -> list[Path]:
    """Parquet shards of `rows` predictions of one 8-class attribute ('scene') with
    lat/lon uniform in `box` (south, west, north, east; default Singapore) and a
    `district` column, written a shard at a time so memory stays at one shard's worth.
    float32 probabilities, as `clipadapt predict` writes them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = pa.array([f"class{k}" for k in range(classes)])
    mix = np.linspace(1.0, 3.0, classes)
    mix /= mix.sum()
    rng = np.random.default_rng(seed)
    written = []
    for start in range(0, rows, shard_rows):
        n = min(shard_rows, rows - start)
        probs = calibrated_probabilities(rng, mix[None, :].repeat(n, 0)).astype(np.float32)
        columns = {
            "path": pc.binary_join_element_wise("images/", pa.array(np.arange(start, start + n).astype(str)), ".jpg", ""),
            "ok": pa.array(np.ones(n, dtype=bool)), "error": pa.nulls(n, pa.string()),
            "lat": pa.array(rng.uniform(box[0], box[2], n)), "lon": pa.array(rng.uniform(box[1], box[3], n)),
            "district": pc.take(pa.array([f"d{k:02d}" for k in range(districts)]), pa.array(rng.integers(0, districts, n))),
            "scene": pc.take(names, pa.array(probs.argmax(axis=1))),
        }
        columns.update({f"scene:p(class{k})": pa.array(probs[:, k]) for k in range(classes)})
        path = folder / f"part-{start // shard_rows:05d}.parquet"
        pq.write_table(pa.table(columns), path)
        written.append(path)
    return written
