"""`Run`: a trained, adapted or imported run (or an exported ONNX file) behind one interface,
and `load`, which opens one. The torch side lives in api/torch_run.py and the onnxruntime
side in api/onnx_run.py; this module imports neither torch nor onnxruntime."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from clipadapt.api.images import gather_with_table
from clipadapt.engine.card import RunCard
from clipadapt.errors import ClipAdaptError
from clipadapt.task import TaskSpec

if TYPE_CHECKING:
    import pandas

NO_IMAGES = "No images given: pass a path, a folder, a PIL image or an array (or a list of them)."
DEFAULT_BATCH = 64  # `clipadapt predict --batch-size`'s default: the same batches give the same last bits


class Run:
    """A run ready to predict: `clipadapt.load(path)` returns one, `clipadapt.train` and
    `clipadapt.adapt` too. Its methods are those of `clipadapt predict` (the same decoding,
    batches and columns), on files, folders, PIL images or H x W x 3 uint8 arrays.

    Attributes: `path` (the run folder or .onnx file), `card` (the typed run card), `task`
    (attributes and classes), `thresholds` (a multi-label run's decision threshold of each
    attribute, as train.thresholds chose them), `threshold` (train.threshold), `warnings`
    (what the run and its loading flagged: classes the text cannot tell apart, a run that
    did not learn), `module` (the torch module; None for an ONNX file) and `transform` (the
    test-time preprocessing of one PIL image).

    >>> run = clipadapt.load("runs/pets")                         # doctest: +SKIP
    >>> run.predict(["cat.jpg", "dog.png"])[["path", "label"]]    # doctest: +SKIP
    """

    path: Path
    card: RunCard
    task: TaskSpec
    threshold: float
    thresholds: dict[str, float]
    warnings: list[str]
    module = None
    transform: Callable

    def predict(self, images, batch_size: int | None = None, progress: bool = False, *,
                threshold: float | None = None, on_bad_image: str = "fail", decode: str = "draft",
                num_workers: int = 0, keep: str | None = None,
                metadata: str | os.PathLike | None = None) -> pandas.DataFrame:
        """`clipadapt predict`'s table for `images` (one or a list of paths, folders, globs,
        manifests, PIL images or H x W x 3 uint8 arrays): one row per image, columns path
        (None for an in-memory image), ok, error, then per attribute its class and every
        class probability (multi-label: its 0/1 decision at `threshold`, one number for every
        attribute, default the run's own per attribute, and its probability). `on_bad_image="fail"` (default) raises ClipAdaptError on an
        unusable image; "skip" gives its row ok=False and the reason. `decode`: "draft"
        decodes large JPEG files at about the model's size, as the command does; "full"
        decodes every pixel first (what an in-memory copy of the file gives). A manifest's
        id and coordinate columns follow `path` as `clipadapt predict` carries them; `keep`
        ("COL,...", "all", "none") and `metadata` (a table of uuid + lat/lon) are its
        `--keep` and `--metadata`.

        >>> run.predict("photos/", batch_size=32).head()           # doctest: +SKIP
        """
        from clipadapt.predict.columns import probability_table
        from clipadapt.predict.places import attach, carried_columns

        items, inputs = gather_with_table(images)
        if not items:
            raise ClipAdaptError(NO_IMAGES)
        places = carried_columns(items, inputs, keep, Path(metadata) if metadata is not None else None)
        probs, ok, errors = self._probabilities(items, batch_size or DEFAULT_BATCH, progress, on_bad_image, decode,
                                                num_workers)
        cuts = [self.thresholds[name] for name in self.task.names] if threshold is None else threshold
        table = probability_table(self.task, items, probs, ok, errors, cuts)
        table = attach(table, places.columns)
        table.attrs["notes"] = list(places.lines)  # what the command prints about the carried columns
        table.attrs["threshold"] = cuts  # what predict_tracks decides its pooled rows at
        return table

    def predict_tracks(self, images, batch_size: int | None = None, progress: bool = False, *,
                       threshold: float | None = None, on_bad_image: str = "fail", decode: str = "draft",
                       num_workers: int = 0) -> pandas.DataFrame:
        """One row per track of `images` (a manifest with a `track` column, as for `clipadapt
        predict`, which writes this table as OUT's stem + '.tracks'): columns track, frames
        (the usable rows pooled), ok, then the prediction columns of the track's pooled
        probabilities (the mean of its frames' probabilities, predict/tracks.py), decided at the
        threshold the per-image table uses. Options as `predict`'s; for both tables, pool
        `predict`'s own with `clipadapt.predict.tracks.pool_tracks(table, run.task,
        table.attrs["threshold"])`.

        >>> run.predict_tracks("tracks.csv")[["track", "frames", "Hat"]]   # doctest: +SKIP
        """
        from clipadapt.data.boxes import TRACK_COLUMN
        from clipadapt.predict.tracks import pool_tracks

        _, inputs = gather_with_table(images)  # the track column first: a missing one is said before predicting
        if TRACK_COLUMN not in inputs.columns:
            raise ClipAdaptError(f"predict_tracks needs a manifest with a '{TRACK_COLUMN}' column (one id per "
                                 "tracked object); use predict for images without tracks.")
        table = self.predict(images, batch_size, progress, threshold=threshold, on_bad_image=on_bad_image,
                             decode=decode, num_workers=num_workers, keep="none")
        return pool_tracks(table, self.task, table.attrs["threshold"], inputs[TRACK_COLUMN])

    def predict_proba(self, images, batch_size: int | None = None, progress: bool = False, *,
                      on_bad_image: str = "fail", decode: str = "draft") -> dict[str, np.ndarray]:
        """Per attribute, the probabilities of `images` (inputs as `predict`'s): a single-label
        attribute gives [N, K] over its classes (`run.task`'s order), a multi-label one [N],
        the probability that it is present. Rows of unusable images (on_bad_image="skip")
        are NaN.

        >>> run.predict_proba([Image.open("cat.jpg")])["label"].shape   # doctest: +SKIP
        (1, 2)
        """
        probs, _, _ = self._probabilities(self._items(images), batch_size or DEFAULT_BATCH, progress, on_bad_image,
                                          decode, 0)
        return {attr.name: (p[:, 1].copy() if self.task.multilabel else p)
                for attr, p in zip(self.task.attributes, probs)}

    def embed(self, images, batch_size: int | None = None, normalise: bool = True) -> np.ndarray:
        """The frozen backbone's image embeddings of `images` (inputs as `predict`'s),
        [N, E] float32; L2-normalised unless `normalise=False`. An unusable image raises.

        >>> run.embed(["cat.jpg", "dog.png"]).shape                 # doctest: +SKIP
        (2, 64)
        """
        raise ClipAdaptError(f"{self.path} is an exported ONNX file: it holds the probabilities only. Load the run "
                             "folder it was exported from to get embeddings.")

    def export(self, path: str | os.PathLike, int8: bool = False) -> Path:
        """Write the run as an ONNX file (`clipadapt export RUN --out path [--int8]`) and
        return its path; `clipadapt.load(path)` opens it with onnxruntime.

        >>> run.export("pets.onnx")                                 # doctest: +SKIP
        PosixPath('pets.onnx')
        """
        raise ClipAdaptError(f"{self.path} is already an exported ONNX file; export the run folder it came from.")

    @property
    def classes(self) -> dict[str, list[str]]:
        """Every attribute's classes, in the order of the probability columns."""
        return {a.name: list(a.classes) for a in self.task.attributes}

    @property
    def metrics(self) -> dict | None:
        """The test metrics the run recorded in its card (None without a test split)."""
        return self.card.metrics

    def __repr__(self) -> str:
        attributes = ", ".join(self.classes)
        engine = "onnxruntime" if self.module is None else f"torch, {getattr(self, 'device', 'cpu')}"
        return (f"Run(method={self.card.method!r}, backbone={self.card.backbone.get('name')!r}, "
                f"attributes=[{attributes}], path={str(self.path)!r}, engine={engine!r})")

    # ------------------------------------------------------------------ the two back ends
    def _items(self, images) -> list:
        items, _ = gather_with_table(images)
        if not items:
            raise ClipAdaptError(NO_IMAGES)
        return items

    def _probabilities(self, items: list, batch_size: int, progress: bool, on_bad_image: str, decode: str,
                       num_workers: int) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
        raise NotImplementedError


def load(run_dir: str | os.PathLike, device: str | None = None) -> Run:
    """Open a run: a run folder written by `clipadapt train`, `adapt` or `import-*` (torch,
    on `device`: "cpu", "cuda", "cuda:1"; None picks a GPU when there is one), or an .onnx
    file written by `clipadapt export` (onnxruntime, CPU; torch is not imported).

    >>> run = clipadapt.load("runs/pets")                       # doctest: +SKIP
    >>> run.classes                                              # doctest: +SKIP
    {'label': ['cat', 'dog']}
    """
    path = Path(run_dir).expanduser()
    if not path.exists():
        from clipadapt.data.inputs import missing_path
        from clipadapt.run_files import RUN_FOLDER

        raise ClipAdaptError(missing_path(path, *RUN_FOLDER))
    if path.is_file():
        if path.suffix.lower() != ".onnx":
            raise ClipAdaptError(f"{path} is a file, not a run folder or an .onnx file; pass the --out folder of a "
                                 "`clipadapt train` run, or a file written by `clipadapt export`.")
        if device not in (None, "auto", "cpu"):
            raise ClipAdaptError(f"{path}: an exported file runs on onnxruntime's CPU provider; device={device!r} "
                                 "needs the run folder.")
        from clipadapt.api.onnx_run import OnnxRun

        return OnnxRun(path)
    from clipadapt.api.torch_run import TorchRun

    return TorchRun(path, device=device)
