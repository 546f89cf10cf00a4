"""Boxes in a frame: a manifest row may name a frame image and the box of one object in it
(a detector's person box), and the crop is cut when the image is read; no file is written.

Two conventions, told apart by the column names (pixels of the upright frame, origin at
the top-left corner, x to the right, y down):
    x, y, w, h        left, top, width, height
    x1, y1, x2, y2    left, top, right, bottom (right and bottom exclusive, as PIL's crop)
Edges are rounded to whole pixels (round half to even, as Python's round) and the box
must then lie inside the frame with at least one pixel on each side. The crop is then an
ordinary image: the model's own test transform (crop, letterbox or resize) applies to it
exactly as to a crop saved to a file, and a box read this way gives the probabilities of
that file (tests/test_boxes.py).

A box that cannot be used (a cell that is not a number, zero or negative size, a box
past the frame's edge) is a `BadImage` naming the manifest row and the fix, so the
bad-image policy treats it as it treats a corrupt file: `fail` stops with the message,
`skip` gives the row ok=False and lists it.

Free of torch: the ONNX runtime cuts boxes with it too (runtime/predict.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from clipadapt.data.images import BadImage, load_image
from clipadapt.errors import ClipAdaptError

XYWH = ("x", "y", "w", "h")
XYXY = ("x1", "y1", "x2", "y2")
CONVENTIONS = (XYWH, XYXY)
# the column that groups a manifest's rows into tracks (one object seen in several frames)
TRACK_COLUMN = "track"

Box = tuple[int, int, int, int]  # left, top, right, bottom in whole pixels (right, bottom exclusive)


def box_columns(columns, where: str = "the manifest") -> tuple[str, ...] | None:
    """The box convention a table's `columns` use (XYWH or XYXY), or None when it has no
    box. Three of a convention's four columns, or both conventions at once, is a
    ClipAdaptError: guessing what was meant would crop the wrong pixels. (Two of them, as
    x and y or w and h alone, are not a box: they may be anything else.)"""
    present = set(columns)
    full = [c for c in CONVENTIONS if set(c) <= present]
    if len(full) > 1:
        raise ClipAdaptError(f"{where} has both box conventions (x, y, w, h and x1, y1, x2, y2); keep one set of "
                             "columns.")
    if full:
        return full[0]
    for convention in CONVENTIONS:
        if len(present & set(convention)) == 3:  # one short of a box: surely meant as one
            missing = [c for c in convention if c not in present]
            raise ClipAdaptError(f"{where} has box column(s) {sorted(present & set(convention))} but not {missing}; "
                                 f"give all of {', '.join(convention)} (or rename the columns if they are not a box).")
    return None


def parse_box(cells, convention: tuple[str, ...]) -> Box:
    """The whole-pixel box of one row's `cells` (the four values in `convention`'s order,
    text or numbers). Raises ValueError with the short reason for a cell that is not a
    finite number or a box without area; the caller names the row."""
    values = []
    for name, cell in zip(convention, cells):
        try:
            value = float(str(cell).strip())
        except ValueError:
            raise ValueError(f"{name} is {str(cell)!r}, not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{name} is {str(cell)!r}, not a finite number")
        values.append(value)
    if convention == XYWH:
        x, y, w, h = values
        if w <= 0 or h <= 0:
            raise ValueError(f"w {w:g}, h {h:g}: a box needs a positive width and height")
        values = [x, y, x + w, y + h]
    left, top, right, bottom = (int(round(v)) for v in values)
    if right <= left or bottom <= top:
        raise ValueError(f"x1..x2 = {values[0]:g}..{values[2]:g}, y1..y2 = {values[1]:g}..{values[3]:g} "
                         "leaves no whole pixel (x2 must exceed x1 and y2 exceed y1)")
    return left, top, right, bottom


def crop_box(image: Image.Image, box: Box, where: str, frame: Path | str | None = None) -> Image.Image:
    """The pixels of `box` in `image` (RGB, upright), as a new image. A box past the
    frame's edge is a BadImage naming `where` and the fix: PIL would fill the outside
    with black, which the model would read as part of the person."""
    left, top, right, bottom = box
    width, height = image.size
    if left < 0 or top < 0 or right > width or bottom > height:
        reason = f"box x {left}..{right}, y {top}..{bottom} lies outside the {width} x {height} frame"
        raise BadImage(f"Unusable box: {where}: {reason}. Clip the box to the frame (0 <= x1 < x2 <= {width}, "
                       f"0 <= y1 < y2 <= {height}) or remove the row.", frame, reason)
    return image.crop(box)


@dataclass(frozen=True)
class BoxedImage:
    """One manifest row that names a box in a frame: read with `open()` (the frame decoded
    and checked as any image, then cropped). `box` is None when the row's cells could not
    be read as a box; `problem` then says why, and `open()` raises it. Path-like (the
    frame), so tables and skip lists name the frame file; the box travels in its columns."""

    frame: Path
    box: Box | None
    where: str
    problem: str = ""

    def __fspath__(self) -> str:
        return os.fspath(self.frame)

    def __str__(self) -> str:
        return str(self.frame)

    def open(self) -> Image.Image:
        """The crop as an 8-bit RGB image; BadImage for a bad frame file or a bad box."""
        if self.box is None:
            raise BadImage(f"Unusable box: {self.where}: {self.problem}. Fix the box cells (x, y, w, h or "
                           "x1, y1, x2, y2, in pixels) or remove the row.", self.frame, self.problem)
        return crop_box(load_image(self.frame, self.where), self.box, self.where, self.frame)


def boxed_items(paths: list[Path], table, manifest: Path | str, rows=None) -> list:
    """`paths` with every row of a manifest `table` that names a box turned into a
    BoxedImage (the table's columns as read: text). `rows`: each row's data-row number in
    the manifest, for messages (default 0..n-1). A table without box columns gives
    `paths` unchanged."""
    from clipadapt.data.tables import where as row_place

    convention = box_columns(table.columns, str(manifest))
    if convention is None:
        return list(paths)
    rows = range(len(paths)) if rows is None else rows
    items = []
    for path, row, cells in zip(paths, rows, table[list(convention)].itertuples(index=False, name=None)):
        where = row_place(Path(manifest), int(row))
        try:
            items.append(BoxedImage(Path(path), parse_box(cells, convention), where))
        except ValueError as exc:
            items.append(BoxedImage(Path(path), None, where, str(exc)))
    return items


def has_boxes(items) -> bool:
    """Whether any item of a prediction's list is a box in a frame."""
    return any(isinstance(item, BoxedImage) for item in items)
