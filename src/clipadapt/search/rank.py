"""Rank a prediction table's rows by a query's probability (`clipadapt search`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clipadapt.search.combine import query_probability
from clipadapt.search.query import Node, bind, parse_query, terms
from clipadapt.search.table import PredictionTable, TableHeader, read_header, read_prediction_table


@dataclass(frozen=True)
class SearchResult:
    """The usable rows ranked by `score` (the query's probability, highest first), with
    each term's probability; `left_out` rows had an unusable image."""

    query: str  # as bound: the run's spelling of every name
    ranked: pd.DataFrame  # rank, path, score, then one probability column per term
    folders: np.ndarray  # per ranked row: where a relative path may also be found
    left_out: int
    source: str

    @property
    def term_columns(self) -> list[str]:
        return [c for c in self.ranked.columns if c not in ("rank", "path", "score")]


def bound_query(text: str, table: TableHeader) -> Node:
    """The query parsed and checked against the table's attributes."""
    return bind(parse_query(text), table.attributes, text)


def search(table: TableHeader | str | Path, text: str) -> SearchResult:
    """Every usable row of `table` with the probability of query `text` (see
    `search.combine`), ranked highest first; ties keep the table's order."""
    header = table if isinstance(table, TableHeader) else read_header(table)
    node = bound_query(text, header)
    used = list(dict.fromkeys(t.name for t in terms(node)))
    if not isinstance(header, PredictionTable):
        table = read_prediction_table(header, attributes=used)  # only the columns the query needs
    states = {name: table.states(name) for name in used}
    attributes = {a.name: a for a in table.attributes}
    # an image that was not read has no probabilities: it is counted, not ranked last
    usable = table.usable() & np.all([np.isfinite(s).all(axis=1) for s in states.values()], axis=0)
    score = query_probability(node, {n: s[usable] for n, s in states.items()}, attributes)
    columns = {"path": table.frame["path"].to_numpy()[usable], "score": score}
    for term in terms(node):
        column = table.probability_column(term.name, term.value)
        columns[column] = pd.to_numeric(table.frame[column], errors="coerce").to_numpy(dtype=np.float64)[usable]
    order = np.argsort(-score, kind="stable")
    ranked = pd.DataFrame({k: np.asarray(v)[order] for k, v in columns.items()})
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return SearchResult(str(node), ranked, table.folders[usable][order], int((~usable).sum()), table.label)
