"""Attribute search over prediction tables: a small query language (`query`), the
query's probability under the model (`combine`), ranking a table (`rank`), its HTML
gallery (`gallery`) and retrieval scores on labelled data (`retrieval`).
docs/search.md describes all of it."""

from clipadapt.search.query import Attribute, parse_query, bind
from clipadapt.search.rank import SearchResult, search

__all__ = ["Attribute", "SearchResult", "bind", "parse_query", "search"]
