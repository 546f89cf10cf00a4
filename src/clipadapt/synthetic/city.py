"""A synthetic city: street views placed on a real-looking map, with a spatial pattern
planted in the class probabilities of three attributes.

The city is a box of `size_km` x `size_km` around `centre` (an invented layout; the
coordinates only put it somewhere plausible). Three features are planted, each raising
one class's probability near it; every other attribute, and the rest of each planted
attribute's mass, follows the street renderer's priors:

    weather = foggy          along a river winding across it, west to south-east
    glare = yes              along an east-west avenue in the south
    lighting_condition = night  in a district in the north-east

Each image's classes are drawn from the probabilities at its place, then rendered with
`streets.render_street_scene`, so every H3 cell has a TRUE share per class twice over:
the planted probability averaged over the cell's images, and the share its images
were actually drawn with (`cell_truth`).

Written under `root` (`write_city`):
    img/<1..7>/<uuid>.jpeg            every image
    train/<attribute>.csv             the labelled part, in the Global StreetScapes layout
    city.csv                          the held-out part: uuid, lat, lon, img_path, the eight
                                      labels and `planted:<attribute>:<class>` probabilities
    truth.csv                         per cell, planted attribute and class: n, planted, realised
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import uuid as uuidlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clipadapt.errors import ClipAdaptError
from clipadapt.synthetic.streets import ATTRIBUTES, PRIORS, render_street_scene

# attribute -> the class the pattern raises
PLANTED: dict[str, str] = {"weather": "foggy", "glare": "yes", "lighting_condition": "night"}
KM_PER_DEG_LAT = 110.574  # WGS 84 near mid latitudes; the box is small enough for a flat map
KM_PER_DEG_LON_EQUATOR = 111.320
CITY_VERSION = 1  # bump when the pictures or the pattern change, so cached folders are re-rendered


@dataclass(frozen=True)
class CityPlan:
    """Where the city is, how many images it holds and how strong its pattern is.

    `low` / `high`: the planted class's probability far from / on its feature. The
    defaults keep every cell's planted share within about 0.1..0.75, a contrast seen in
    real street-view maps (a foggy valley, a lit avenue), not a black-and-white one.
    """

    centre: tuple[float, float] = (52.37, 4.90)  # lat, lon
    size_km: float = 6.0
    resolution: int = 8  # H3 cells of about 0.74 km^2: ~59 of them in the 6 km box
    per_cell: int = 30  # held-out images in every cell: no cell under the map's "small" threshold (30)
    n_train: int = 800  # labelled images anywhere in the city
    low: float = 0.08
    high: float = 0.78
    river_width_km: float = 0.45  # the fog's Gaussian half-width around the river
    avenue_width_km: float = 0.35  # the glare's around the avenue
    district_radius_km: float = 1.3
    seed: int = 0
    image_size: int = 96


# ----------------------------------------------------------------------------- coordinates
def to_latlon(plan: CityPlan, x_km: np.ndarray, y_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local kilometres (east, north of the centre) -> degrees (equirectangular)."""
    lat0, lon0 = plan.centre
    return lat0 + y_km / KM_PER_DEG_LAT, lon0 + x_km / (KM_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat0)))


def to_km(plan: CityPlan, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Degrees -> local kilometres: the inverse of `to_latlon`."""
    lat0, lon0 = plan.centre
    return (lon - lon0) * KM_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat0)), (lat - lat0) * KM_PER_DEG_LAT


def city_cells(plan: CityPlan) -> list[str]:
    """The H3 cells (hex names, sorted) whose centres lie in the box."""
    import h3

    half = plan.size_km / 2
    (south, north), (west, east) = (to_latlon(plan, np.array([-half, half]), np.array([-half, half])))
    box = h3.LatLngPoly([(south, west), (south, east), (north, east), (north, west)])
    return sorted(h3.polygon_to_cells(box, plan.resolution))


def points_in_cells(cells: list[str], per_cell: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`per_cell` points uniform in each cell (rejection from the cell's bounding box):
    (lat, lon, index of the cell in `cells`)."""
    import h3

    lat, lon, owner = [], [], []
    for k, cell in enumerate(cells):
        ring = np.asarray(h3.cell_to_boundary(cell))
        (s, w), (n, e) = ring.min(axis=0), ring.max(axis=0)
        found = 0
        while found < per_cell:
            # rounded as the manifest writes them, so a point read back lands in the same cell
            a, b = round(rng.uniform(s, n), 6), round(rng.uniform(w, e), 6)
            if h3.latlng_to_cell(a, b, h3.get_resolution(cell)) == cell:
                lat.append(a), lon.append(b), owner.append(k)
                found += 1
    return np.asarray(lat), np.asarray(lon), np.asarray(owner)


def points_in_city(cells: list[str], count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` points uniform over the union of `cells` (a cell drawn by area, which is
    nearly equal for neighbours, then a point in it)."""
    chosen = rng.integers(0, len(cells), count)
    lat, lon = np.empty(count), np.empty(count)
    for k in np.unique(chosen):
        rows = np.flatnonzero(chosen == k)
        a, b, _ = points_in_cells([cells[k]], len(rows), rng)
        lat[rows], lon[rows] = a, b
    return lat, lon


# ----------------------------------------------------------------------------- the pattern
def river_km(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The river's course in the 6 km box's kilometres, parametrised by t in [-1, 1]:
    west to south-east with two bends."""
    return 3.6 * t, -1.9 * t + 0.8 * np.sin(2.6 * t)


def river_distance(x: np.ndarray, y: np.ndarray, size_km: float) -> np.ndarray:
    """Distance (km) from each point to the river, scaled with the box."""
    scale = size_km / 6.0
    rx, ry = river_km(np.linspace(-1, 1, 600))
    d2 = (x[:, None] - scale * rx[None, :]) ** 2 + (y[:, None] - scale * ry[None, :]) ** 2
    return np.sqrt(d2.min(axis=1))


def feature_strength(plan: CityPlan, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per planted attribute, 0..1: how much of its feature each point (km) sits on."""
    scale = plan.size_km / 6.0
    avenue_y = -1.6 * scale
    district = (1.5 * scale, 1.4 * scale)
    r = np.hypot(x - district[0], y - district[1])
    return {
        "weather": np.exp(-0.5 * (river_distance(x, y, plan.size_km) / plan.river_width_km) ** 2),
        "glare": np.exp(-0.5 * ((y - avenue_y) / plan.avenue_width_km) ** 2),
        # a soft edge (logistic, 0.2 km): the district fades out over a few streets
        "lighting_condition": 1.0 / (1.0 + np.exp((r - plan.district_radius_km) / 0.2)),
    }


def planted_probabilities(plan: CityPlan, lat: np.ndarray, lon: np.ndarray) -> dict[str, np.ndarray]:
    """attribute -> [points, classes] probabilities (classes in PRIORS order) at each point.
    The planted class gets low..high by its feature; the other classes share the rest in
    their prior proportions. Attributes without a feature keep the priors everywhere."""
    x, y = to_km(plan, np.asarray(lat, float), np.asarray(lon, float))
    strength = feature_strength(plan, x, y)
    out = {}
    for attribute, prior in PRIORS.items():
        base = np.asarray(list(prior.values()))
        probs = np.broadcast_to(base, (len(x), len(base))).copy()
        if attribute in PLANTED:
            k = list(prior).index(PLANTED[attribute])
            planted = plan.low + (plan.high - plan.low) * strength[attribute]
            rest = np.delete(base, k) / np.delete(base, k).sum()
            probs = np.insert(np.outer(1 - planted, rest), k, planted, axis=1)
        out[attribute] = probs
    return out


def draw_labels(probs: dict[str, np.ndarray], rng: np.random.Generator) -> list[dict[str, str]]:
    """One class per attribute and image, drawn from its probabilities (inverse CDF)."""
    count = len(next(iter(probs.values())))
    labels: list[dict[str, str]] = [{} for _ in range(count)]
    for attribute, p in probs.items():
        classes = list(PRIORS[attribute])
        picks = (rng.random(count)[:, None] > np.cumsum(p, axis=1)[:, :-1]).sum(axis=1)
        for row, k in zip(labels, picks):
            row[attribute] = classes[k]
    return labels


def planted_column(attribute: str, class_name: str) -> str:
    """The manifest column of one class's planted probability."""
    return f"planted:{attribute}:{class_name}"


# ----------------------------------------------------------------------------- the truth
def cell_truth(manifest, resolution: int):
    """Per cell, planted attribute and class: n, `planted` (the mean planted probability)
    and `realised` (the share of images drawn with that class). `manifest`: a DataFrame
    with lat, lon, the labels and the planted columns (city.csv as written)."""
    import h3
    import pandas as pd

    lat, lon = manifest["lat"].astype(float), manifest["lon"].astype(float)
    cells = [h3.latlng_to_cell(a, b, resolution) for a, b in zip(lat, lon)]
    frame = manifest.assign(h3=cells)
    rows = []
    for cell, group in frame.groupby("h3", sort=True):
        for attribute in PLANTED:
            for class_name in PRIORS[attribute]:
                rows.append({"h3": cell, "attribute": attribute, "class": class_name, "n": len(group),
                             "planted": float(group[planted_column(attribute, class_name)].astype(float).mean()),
                             "realised": float((group[attribute] == class_name).mean())})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- writing
def _uuid(rng: np.random.Generator) -> str:
    """A version-4-shaped uuid from `rng`: a seed names the images the same way."""
    return str(uuidlib.UUID(bytes=rng.bytes(16), version=4))


def _render(root: Path, split: int, labels: list[dict[str, str]], plan: CityPlan,
            rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Render one part's images (pixels from their own stream per image); (uuids, img_paths)."""
    names, paths = [], []
    for i, row in enumerate(labels):
        name = _uuid(rng)
        rel = f"img/{int(rng.integers(1, 8))}/{name}.jpeg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        render_street_scene(row, np.random.default_rng([plan.seed, split, i]), plan.image_size).save(root / rel,
                                                                                                   quality=92)
        names.append(name)
        paths.append(rel)
    return names, paths


def _write_train(root: Path, names, paths, lat, lon, labels) -> None:
    """The labelled part as train/<attribute>.csv, the columns Global StreetScapes uses."""
    (root / "train").mkdir(parents=True, exist_ok=True)
    for attribute in ATTRIBUTES:
        with open(root / "train" / f"{attribute}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["uuid", "source", "lat", "lon", "img_path", attribute])
            for row in zip(names, lat, lon, paths, labels):
                writer.writerow([row[0], "synthetic", f"{row[1]:.6f}", f"{row[2]:.6f}", row[3], row[4][attribute]])


def _write_manifest(path: Path, names, paths, lat, lon, labels, probs) -> None:
    """The held-out part: what `clipadapt predict` reads, plus the truth behind each image."""
    planted = [(a, c, k) for a in PLANTED for k, c in enumerate(PRIORS[a])]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["uuid", "lat", "lon", "img_path", *ATTRIBUTES, *(planted_column(a, c) for a, c, _ in planted)])
        for i, (name, rel) in enumerate(zip(names, paths)):
            writer.writerow([name, f"{lat[i]:.6f}", f"{lon[i]:.6f}", rel, *(labels[i][a] for a in ATTRIBUTES),
                             *(f"{probs[a][i, k]:.6f}" for a, _, k in planted)])


def _check(plan: CityPlan) -> None:
    if plan.per_cell < 1 or plan.n_train < 1:
        raise ClipAdaptError(f"the city needs per_cell >= 1 and n_train >= 1 (got {plan.per_cell}, {plan.n_train}).")
    if not 0 < plan.low < plan.high < 1:
        raise ClipAdaptError(f"the planted probabilities need 0 < low < high < 1 (got {plan.low}, {plan.high}).")
    if not 0 <= plan.resolution <= 15 or plan.size_km <= 0:
        raise ClipAdaptError(f"bad city box: resolution {plan.resolution}, size {plan.size_km} km.")


def write_city(root: Path, plan: CityPlan = CityPlan()) -> Path:
    """Render the city under `root` (layout in the module docstring) and return `root`.

    Deterministic for a plan. A folder already finished with the same plan (city.json
    and the `done` marker) is kept as it is; one from another plan is cleared first.
    """
    import pandas as pd

    _check(plan)
    root = Path(root)
    params = {"generator": "clipadapt.synthetic.city", "version": CITY_VERSION, **asdict(plan)}
    params["centre"] = list(plan.centre)
    marker, done = root / "city.json", root / "done"
    if marker.is_file() and done.is_file() and json.loads(marker.read_text()) == params:
        return root
    if root.exists() and any(root.iterdir()) and not marker.is_file():
        raise ClipAdaptError(f"{root} holds files the city demo did not write; refusing to overwrite. "
                             "Give the demo a new or empty --out folder.")
    for sub in ("img", "train", "city.csv", "truth.csv", "done"):
        target = root / sub
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(params, indent=2) + "\n")
    rng = np.random.default_rng(plan.seed)
    cells = city_cells(plan)
    # held-out: the same number of images in every cell, so no cell's share rests on a handful
    lat, lon, _ = points_in_cells(cells, plan.per_cell, rng)
    probs = planted_probabilities(plan, lat, lon)
    labels = draw_labels(probs, rng)
    names, paths = _render(root, 1, labels, plan, rng)
    _write_manifest(root / "city.csv", names, paths, lat, lon, labels, probs)
    # labelled: anywhere in the city, drawn from the same pattern
    t_lat, t_lon = points_in_city(cells, plan.n_train, rng)
    t_labels = draw_labels(planted_probabilities(plan, t_lat, t_lon), rng)
    t_names, t_paths = _render(root, 0, t_labels, plan, rng)
    _write_train(root, t_names, t_paths, t_lat, t_lon, t_labels)
    manifest = pd.read_csv(root / "city.csv", dtype=str, keep_default_na=False)
    cell_truth(manifest, plan.resolution).to_csv(root / "truth.csv", index=False)
    done.write_text("finished\n")
    return root
