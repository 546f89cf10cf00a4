"""The protocol's outputs in OUT: table.md, results.csv (tidy numbers), results.json (every
cell's scores) and report.html (the tables and a figure, one self-contained page: the
figure is inlined as a base64 PNG, like the run report's)."""

from __future__ import annotations

from html import escape
from pathlib import Path

import matplotlib.ticker
import pandas as pd

from clipadapt.protocols.protocol import Protocol
from clipadapt.protocols.runner import CellResult
from clipadapt.protocols.tables import Table, collect, harmonic_mean, tables, tidy_rows
from clipadapt.io import atomic_write, write_json, write_text
from clipadapt.metrics.aggregate import mean_std
from clipadapt.metrics.plots import line_style, plot_style
from clipadapt.report.embed import png_uri
from clipadapt.report.figures import figure_png, new_figure
from clipadapt.report.html import CSS
from clipadapt.report.sections import img, note, section

PANEL = (3.2, 2.6)  # inches per data set


def write_outputs(protocol: Protocol, results: list[CellResult], out: Path, command: str = "") -> list[Table]:
    """Write the four files into `out`; return the tables (for the terminal)."""
    out = Path(out)
    made = tables(protocol, results)
    write_text(out / "table.md", "\n\n".join(t.markdown() for t in made) + "\n")
    frame = pd.DataFrame(tidy_rows(protocol, results))
    atomic_write(out / "results.csv", lambda p: frame.to_csv(p, index=False))
    write_json(out / "results.json", {"protocol": protocol.kind, "cells": [
        {"dataset": r.cell.dataset, "method": r.cell.method, "shots": r.cell.shots, "seed": r.cell.seed,
         "folder": str(r.cell.folder), "scores": r.scores} for r in results]})
    write_text(out / "report.html", html_page(protocol, results, made, command))
    return made


def html_page(protocol: Protocol, results: list[CellResult], made: list[Table], command: str) -> str:
    figure = {"few_shot": shots_figure, "base_to_novel": base_novel_figure, "transfer": transfer_figure}[
        protocol.kind](protocol, results)
    body = [section(f"table-{i}", t.title, html_table(t)) for i, t in enumerate(made)]
    body.append(section("figure", "Figure", img(png_uri(figure), alt=_figure_alt(protocol))))
    if command:
        body.append(section("command", "Command", f"<pre>{escape(command)}</pre>"))
    title = {"few_shot": "few-shot", "base_to_novel": "base-to-novel", "transfer": "transfer"}[protocol.kind]
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>clipadapt bench: {title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n'
            f'<header>\n<p class="kicker">clipadapt bench</p>\n<h1>{escape(made[0].title)}</h1>\n</header>\n'
            f'<main>\n{"".join(body)}\n</main>\n</body>\n</html>\n')


def html_table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    rows = []
    for row in table.rows:
        css = ' class="mean"' if row[0].startswith("average") else ""
        cells = "".join(f"<td>{escape(c)}</td>" if i < table.text_columns else f'<td class="num">{escape(c)}</td>'
                        for i, c in enumerate(row))
        rows.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>" + "".join(
        note(n) for n in table.notes)


def _figure_alt(protocol: Protocol) -> str:
    return {"few_shot": "test accuracy against the number of training images per class, one panel per data set",
            "base_to_novel": "base, novel and harmonic-mean accuracy per method, one panel per data set",
            "transfer": "accuracy on each target data set per method"}[protocol.kind]


def _panels(count: int):
    columns = min(count, 3)
    rows = -(-count // columns)
    fig = new_figure((PANEL[0] * columns, PANEL[1] * rows), layout="constrained")
    return fig, [fig.add_subplot(rows, columns, i + 1) for i in range(count)]


def shots_figure(protocol: Protocol, results: list[CellResult]) -> bytes:
    """Accuracy against K (log2 axis), one line per method with the seeds' std as error bars;
    a method that does not train is a dashed horizontal line."""
    grouped = collect(results)
    with plot_style():
        fig, axes = _panels(len(protocol.datasets))
        for ax, dataset in zip(axes, protocol.datasets):
            for i, method in enumerate(protocol.methods):
                style = line_style(i)
                if (dataset, method, None) in grouped:
                    summary = mean_std(grouped[(dataset, method, None)]["test"])
                    ax.axhline(100 * summary["mean"], color=style["color"], linestyle="--", linewidth=1.2, label=method)
                    continue
                points = [(k, mean_std(grouped[(dataset, method, k)]["test"])) for k in protocol.shots
                          if grouped.get((dataset, method, k), {}).get("test")]
                if points:
                    ax.errorbar([k for k, _ in points], [100 * s["mean"] for _, s in points],
                                yerr=[100 * s["std"] for _, s in points], label=method, markersize=4, linewidth=1.5,
                                capsize=2, **style)
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(protocol.shots))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([str(k) for k in protocol.shots]))
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_title(dataset)
            ax.set_xlabel("training images per class")
            ax.set_ylabel("test accuracy (%)")
            ax.grid(alpha=0.3)
        _legend(fig, axes[0])
        return figure_png(fig)


def _bars(ax, groups: list[str], series: dict[str, list[float | None]]) -> None:
    """Grouped bars: one group per entry of `groups`, one bar per series (a method)."""
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar([x for x, v in zip(xs, values) if v is not None], [v for v in values if v is not None], width,
               label=name, color=line_style(i)["color"])
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, axis="y")


def _legend(fig, ax) -> None:
    """One legend beside the panels, where it covers no bar."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", frameon=False, fontsize=7)


def _mean_of(grouped, key: tuple, split: str) -> float | None:
    values = grouped.get(key, {}).get(split)
    return mean_std(values)["mean"] if values else None


def _key(grouped, dataset: str, method: str, shots: int) -> tuple:
    return (dataset, method, None) if (dataset, method, None) in grouped else (dataset, method, shots)


def base_novel_figure(protocol: Protocol, results: list[CellResult]) -> bytes:
    grouped = collect(results)
    (k,) = protocol.shots
    with plot_style():
        fig, axes = _panels(len(protocol.datasets))
        for ax, dataset in zip(axes, protocol.datasets):
            series = {}
            for method in protocol.methods:
                key = _key(grouped, dataset, method, k)
                b, n = _mean_of(grouped, key, "test"), _mean_of(grouped, key, "novel")
                h = harmonic_mean(b, n) if b is not None and n is not None else None
                series[method] = [None if v is None else 100 * v for v in (b, n, h)]
            _bars(ax, ["base", "novel", "H"], series)
            ax.set_title(dataset)
        _legend(fig, axes[0])
        return figure_png(fig)


def transfer_figure(protocol: Protocol, results: list[CellResult]) -> bytes:
    grouped = collect(results)
    (k,) = protocol.shots
    names = [protocol.source, *protocol.targets]
    with plot_style():
        fig, (ax,) = _panels(1)
        fig.set_size_inches(max(PANEL[0], 0.9 * len(names) + 1.5), PANEL[1])
        series = {}
        for method in protocol.methods:
            key = _key(grouped, protocol.source, method, k)
            values = [_mean_of(grouped, key, "test"), *(_mean_of(grouped, key, t) for t in protocol.targets)]
            series[method] = [None if v is None else 100 * v for v in values]
        _bars(ax, names, series)
        ax.tick_params(axis="x", labelrotation=30)
        _legend(fig, ax)
        return figure_png(fig)
