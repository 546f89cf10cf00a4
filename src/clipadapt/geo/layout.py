"""Which columns of a predictions table hold what: the attributes and their probability
columns (the layout `clipadapt predict` writes, predict/columns.py), and the coordinates.

Single-label attribute `a`: `a` (top class) and `a:p(<class>)` per class.
Multi-label attribute `a`: `a` (0/1 decision) and `a:p` (probability it is present).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clipadapt.errors import ClipAdaptError
from clipadapt.suggest import did_you_mean

_CLASS_P = re.compile(r"^(?P<attr>.+):p\((?P<cls>.*)\)$")
_PRESENT_P = re.compile(r"^(?P<attr>.+):p$")
PRESENT = "present"  # the one "class" of a multi-label attribute in the output
LAT_NAMES = ("lat", "latitude")
LON_NAMES = ("lon", "lng", "longitude")


@dataclass(frozen=True)
class AttributeColumns:
    """One attribute's columns: `decision` (top class / 0-1 decision) and one
    probability column per class (multi-label: one, for the class 'present')."""

    name: str
    multilabel: bool
    classes: tuple[str, ...]
    probability_columns: tuple[str, ...]

    @property
    def decision(self) -> str:
        return self.name


def find_attributes(names: list[str], wanted: list[str] | None = None, source: str = "the table") -> list[AttributeColumns]:
    """The attributes of a predictions table from its column names, in table order;
    `wanted` keeps those (in that order). Raises ClipAdaptError for a table without
    probability columns, an attribute both single- and multi-label, a missing decision
    column or an unknown wanted attribute."""
    single: dict[str, list[tuple[str, str]]] = {}
    multi: dict[str, str] = {}
    for column in names:
        if (match := _CLASS_P.match(column)) is not None:
            single.setdefault(match["attr"], []).append((match["cls"], column))
        elif (match := _PRESENT_P.match(column)) is not None:
            multi[match["attr"]] = column
    if not single and not multi:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise ClipAdaptError(f"{source} has no probability columns (looked for '<attribute>:p(<class>)' of a "
                             f"single-label run and '<attribute>:p' of a multi-label one; its columns: {shown}). "
                             "Pass a table written by `clipadapt predict`.")
    found: dict[str, AttributeColumns] = {}
    for name in _attribute_order(names, single, multi):
        if name in single and name in multi:
            raise ClipAdaptError(f"{source} has both '{name}:p' (multi-label) and '{name}:p(<class>)' (single-label) "
                                 f"columns for '{name}': keep the columns of one kind of run.")
        if name not in names:
            kind = "0/1 decision" if name in multi else "top class"
            raise ClipAdaptError(f"{source} has probability columns for '{name}' but no '{name}' column (its "
                                 f"{kind}): pass the table as `clipadapt predict` wrote it.")
        if name in single:
            classes, columns = zip(*single[name])
            found[name] = AttributeColumns(name, False, tuple(classes), tuple(columns))
        else:
            found[name] = AttributeColumns(name, True, (PRESENT,), (multi[name],))
    if not wanted:
        return list(found.values())
    unknown = [w for w in wanted if w not in found]
    if unknown:
        raise ClipAdaptError(f"--attributes: {source} has no attribute '{unknown[0]}'.{did_you_mean(unknown[0], found)} "
                             f"Its attributes: {', '.join(found)}.")
    return [found[w] for w in dict.fromkeys(wanted)]


def _attribute_order(names, single, multi) -> list[str]:
    """Attribute names in the order their first probability column appears."""
    order = []
    for column in names:
        for pattern in (_CLASS_P, _PRESENT_P):
            match = pattern.match(column)
            if match is not None and match["attr"] in (single if pattern is _CLASS_P else multi):
                order.append(match["attr"])
                break
    return list(dict.fromkeys(order))


def find_coordinates(names: list[str], source: str = "the table") -> tuple[str, str]:
    """(lat column, lon column), matched case-insensitively against lat/latitude and
    lon/lng/longitude; a ClipAdaptError naming what was looked for when one is missing."""
    folded = {n.strip().lower(): n for n in names}
    lat = next((folded[k] for k in LAT_NAMES if k in folded), None)
    lon = next((folded[k] for k in LON_NAMES if k in folded), None)
    if lat is None or lon is None:
        missing = " and ".join(what for what, col in (("latitude", lat), ("longitude", lon)) if col is None)
        raise ClipAdaptError(f"--by h3: {source} has no {missing} column (looked for "
                             f"{'/'.join(LAT_NAMES)} and {'/'.join(LON_NAMES)}, in WGS84 degrees). Add them to the "
                             "table, or group by a column instead, e.g. --by city.")
    return lat, lon
