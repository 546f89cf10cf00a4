"""`clipadapt bench`: run a benchmark protocol file (clipadapt.protocols), as a plain function with
typer parameters; cli/main.py registers it (`app.command("bench")(bench_command)`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List

import typer


def bench_command(
    protocol_file: Path = typer.Argument(..., help="Protocol YAML: protocol, methods, datasets, shots, seeds, epochs "
                                                   "(docs/benchmarks.md)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the cells' run folders and the tables; run the same "
                                                      "command again to resume where it stopped."),
    set_: List[str] = typer.Option([], "--set", help="A setting for every cell, e.g. --set features.dir=/cache "
                                                     "(repeatable; applied last, over the protocol's settings)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and which are finished; run nothing."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Run a benchmark protocol (few-shot K x seeds, base-to-novel, transfer): one resumable
    run folder per cell (finished cells are not re-run), then the paper-style table as
    OUT/table.md, OUT/results.csv and OUT/report.html (with accuracy against shots)."""
    from clipadapt.cli.common import quiet_libraries, console, out_console, run_safely

    def go():
        from clipadapt.protocols import cell_state, read_protocol, run_protocol

        quiet_libraries()
        protocol = read_protocol(protocol_file, set_)
        from clipadapt.protocols.page import write_outputs  # matplotlib, the report: only for a good protocol

        if dry_run:
            for cell in protocol.cells:
                extra = f" (+ scored on {', '.join(cell.evaluations)})" if cell.evaluations else ""
                out_console.print(f"{cell_state(out, cell):8} {out / cell.folder}{extra}", highlight=False,
                                  soft_wrap=True)
            return
        results = run_protocol(protocol, out, progress=not quiet,
                               notify=lambda message: console.print(message, highlight=False, soft_wrap=True))
        command = "clipadapt " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] else ""
        made = write_outputs(protocol, results, out, command)
        for table in made:
            out_console.print(table.markdown() + "\n", highlight=False, markup=False, soft_wrap=True)
        ran = sum(r.ran for r in results)
        out_console.print(f"{ran} cells run, {len(results) - ran} already finished; wrote {out}/table.md, results.csv, "
                          "results.json, report.html", highlight=False, soft_wrap=True)

    run_safely(go)
