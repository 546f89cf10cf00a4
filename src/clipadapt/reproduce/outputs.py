"""The comparison's files in OUT: comparison.md (the table, its notes, the cells not run
with how to get them, the rule), comparison.csv (one row per cell), comparison.json
(everything, for scripts) and comparison.html (one self-contained page: inline CSS, no
script, nothing fetched, like every clipadapt report). The tables are `clipadapt bench`'s
`Table` (Markdown and HTML alike); the page uses the run report's CSS and sections.
"""

from __future__ import annotations

import dataclasses
from html import escape
from pathlib import Path

import pandas as pd

from clipadapt.io import atomic_write, write_json, write_text
from clipadapt.protocols.tables import Table
from clipadapt.reproduce.availability import Missing
from clipadapt.reproduce.compare import RULE, Row
from clipadapt.reproduce.recipe import Blocked
from clipadapt.reproduce.tables import PaperTable

VERDICTS = ("within", "above", "below", "no published figure", "not run", "left out")


def shown(rows: list[Row]) -> list[Row]:
    """The rows a table shows: not those --methods / --datasets left out (tally counts them)."""
    return [r for r in rows if r.verdict != "left out"]


def comparison_table(rows: list[Row]) -> Table:
    header = ["method", "data set", "metric", "verdict", "ours (mean ± sd)", "n", "published", "difference",
              "tolerance"]
    body = [[r.method, r.dataset, r.metric, r.verdict, _ours(r), str(r.n) if r.n else "-", _number(r.published),
             _number(r.difference, sign=True), _number(r.tolerance)] for r in shown(rows)]
    return Table("Comparison with the published figures", header, body, text_columns=4)


def blocked_groups(blocked: list[Blocked]) -> list[tuple[list[str], list[str], Missing]]:
    """(methods, data sets, what is missing) once per missing thing: a data set missing is
    one line, weights missing for the whole table one line too."""
    grouped: dict[Missing, tuple[dict, dict]] = {}
    for b in blocked:
        methods, datasets = grouped.setdefault(b.missing, ({}, {}))
        methods[b.method] = datasets[b.dataset] = None
    return [(list(m), list(d), missing) for missing, (m, d) in grouped.items()]


def not_run_table(blocked: list[Blocked]) -> Table:
    body = [[", ".join(methods), ", ".join(datasets), missing.reason, missing.fetch]
            for methods, datasets, missing in blocked_groups(blocked)]
    return Table("Not run here: what is missing and how to get it", ["methods", "data sets", "why", "how to get it"],
                 body, text_columns=4)


def notes(rows: list[Row]) -> list[str]:
    """Each note once, with the cells it concerns."""
    grouped: dict[str, list[str]] = {}
    for r in shown(rows):
        for text in r.notes:
            grouped.setdefault(text, []).append(f"{r.method}/{r.dataset}/{r.metric}")
    return [f"{text} ({', '.join(cells)})" for text, cells in grouped.items()]


def tally(rows: list[Row]) -> str:
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    return ", ".join(f"{v} {n}" for v, n in counts.items() if n)


def markdown(table: PaperTable, rows: list[Row], blocked: list[Blocked]) -> str:
    source = table.source
    parts = [f"# {table.title}", "",
             f"Source: {source.paper}, arXiv {source.arxiv}, {source.table}.",
             f"How the figures were checked: {source.checked}",
             *(f"Read from: {where}" for where in source.read_from), "",
             f"Rule: {RULE}", "", comparison_table(rows).markdown(), "", f"Verdicts: {tally(rows)}."]
    if notes(rows):
        parts += ["", "Notes:", *(f"- {n}" for n in notes(rows))]
    if blocked:
        parts += ["", not_run_table(blocked).markdown()]
    return "\n".join(parts) + "\n"


def write_comparison(out: Path, table: PaperTable, rows: list[Row], blocked: list[Blocked],
                     command: str = "") -> str:
    """Write the four files; return the Markdown (for the terminal)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(table, rows, blocked)
    write_text(out / "comparison.md", text)
    frame = pd.DataFrame([{"method": r.method, "dataset": r.dataset, "metric": r.metric, "verdict": r.verdict,
                           "mean": _round(r.mean), "sd": _round(r.sd), "n": r.n,
                           "values": ";".join(f"{v:.4f}" for v in r.values), "published": r.published,
                           "difference": _round(r.difference), "tolerance": _round(r.tolerance),
                           "notes": " | ".join(r.notes)} for r in rows])
    atomic_write(out / "comparison.csv", lambda p: frame.to_csv(p, index=False))
    write_json(out / "comparison.json", {
        "table": table.name, "title": table.title, "source": table.source.model_dump(), "kind": table.kind,
        "rule": RULE, "verdicts": {v: sum(r.verdict == v for r in rows) for v in VERDICTS},
        "rows": [dataclasses.asdict(r) for r in rows],
        "not_run": [{"method": b.method, "dataset": b.dataset, "why": b.missing.reason, "how_to_get_it": b.missing.fetch}
                    for b in blocked],
        "command": command})
    write_text(out / "comparison.html", page(table, rows, blocked, command))
    return text


def page(table: PaperTable, rows: list[Row], blocked: list[Blocked], command: str) -> str:
    from clipadapt.protocols.page import html_table
    from clipadapt.report.html import CSS
    from clipadapt.report.sections import note, section

    source = table.source
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in (
        ("paper", source.paper), ("arXiv", source.arxiv), ("table", source.table), ("checked", source.checked),
        *(("read from", where) for where in source.read_from), ("kind", table.kind)))
    body = [section("source", "Source", f'<dl class="facts">{facts}</dl>'),
            section("comparison", "Comparison", html_table(comparison_table(rows)) + note(f"Verdicts: {tally(rows)}.")
                    + note(f"Rule: {RULE}"))]
    if notes(rows):
        body.append(section("notes", "Notes", "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes(rows)) + "</ul>"))
    if blocked:
        body.append(section("not-run", "Not run here", html_table(not_run_table(blocked))))
    if command:
        body.append(section("command", "Command", f"<pre>{escape(command)}</pre>"))
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>clipadapt reproduce: {escape(table.name)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n'
            f'<header>\n<p class="kicker">clipadapt reproduce</p>\n<h1>{escape(table.title)}</h1>\n</header>\n'
            f'<main>\n{"".join(body)}\n</main>\n</body>\n</html>\n')


def _ours(row: Row) -> str:
    if row.mean is None:
        return "-"
    return f"{row.mean:.2f}" if row.sd is None else f"{row.mean:.2f} ± {row.sd:.2f}"


def _number(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if sign else f"{value:.2f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
