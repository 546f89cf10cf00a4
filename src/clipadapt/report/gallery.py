"""Which test images the report shows: mistakes first, the most confident ones on top.

A confident mistake is the most informative picture of a run (a label error, a
look-alike class, a shortcut), so wrong predictions come first, sorted by the
probability the model gave its (wrong) class, highest first. Correct predictions
follow, least confident first: those near the decision boundary say more than the
easy ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clipadapt.errors import ClipAdaptError


@dataclass(frozen=True)
class GalleryItem:
    """One test image of one attribute's gallery."""

    path: str
    true: str
    predicted: str
    probability: float  # of the predicted class

    @property
    def wrong(self) -> bool:
        return self.true != self.predicted


def read_predictions(path: Path) -> pd.DataFrame:
    """predictions.csv with labels as text and probabilities as floats.

    Every column is first read as text: pandas would otherwise turn class names such
    as "true"/"false" (pano_status) into booleans and "1"/"2" into numbers, which no
    longer match the class names of the run card.
    """
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ClipAdaptError(f"Could not read {path} ({exc}). Re-run `clipadapt eval` to rewrite it.") from None
    for column in table.columns:
        if ":p(" in column:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def rank_gallery(table: pd.DataFrame, attribute: str, limit: int) -> list[GalleryItem]:
    """Up to `limit` labelled rows of `attribute`, mistakes first (see module doc).

    Rows without a true label, without a prediction or whose probability is missing
    (an unreadable image) are left out. Ties keep the file order (stable sort).
    """
    true_col, pred_col = f"{attribute}:true", attribute
    if true_col not in table.columns or pred_col not in table.columns or "path" not in table.columns:
        return []
    predicted_probability = _predicted_probability(table, attribute)
    usable = [
        GalleryItem(str(path), str(true), str(pred), float(prob))
        for path, true, pred, prob in zip(table["path"], table[true_col], table[pred_col], predicted_probability)
        if true and pred and np.isfinite(prob)
    ]
    wrong = sorted((it for it in usable if it.wrong), key=lambda it: -it.probability)
    right = sorted((it for it in usable if not it.wrong), key=lambda it: it.probability)
    return (wrong + right)[:max(limit, 0)]


def _predicted_probability(table: pd.DataFrame, attribute: str) -> np.ndarray:
    """Per row, the probability of the predicted class (NaN where it is not there)."""
    predicted = table[attribute].to_numpy()
    out = np.full(len(table), np.nan)
    for cls in pd.unique(predicted):
        column = f"{attribute}:p({cls})"
        if column in table.columns:
            rows = predicted == cls
            out[rows] = table[column].to_numpy(dtype=float)[rows]
    return out


def resolve_image(path: str, run_dir: Path) -> Path | None:
    """The image file of a predictions row: as written (absolute, or relative to where
    the run was started), else relative to the run folder; None when neither exists."""
    for candidate in (Path(path), Path(run_dir) / path):
        if candidate.is_file():
            return candidate
    return None
