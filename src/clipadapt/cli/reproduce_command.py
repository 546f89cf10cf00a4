"""`clipadapt reproduce`: run a paper's table (clipadapt.reproduce) and compare with its
figures, as a plain function with typer parameters; cli/main.py registers it
(`app.command("reproduce")(reproduce_command)`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer


def reproduce_command(
    name: Optional[str] = typer.Argument(None, help="The table: a name from --list (e.g. coop-16shot), or the path "
                                                    "of a table YAML of your own."),
    list_: bool = typer.Option(False, "--list", help="List every shipped table (name, title, source paper, arXiv "
                                                     "id and table, kind, cells) and exit."),
    data: Optional[Path] = typer.Option(None, "--data", help="The folder holding the data sets (sets data.root; "
                                                             "a recipe's relative data paths are under it)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Backbone weights: a local file or an open_clip "
                                                                  "tag (sets backbone.pretrained)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the run folders and the comparison; "
                                                                 "run the same command again to resume."),
    set_: List[str] = typer.Option([], "--set", help="A setting for every run, e.g. --set train.device=cuda "
                                                     "(repeatable; applied last)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds instead of the recipe's, "
                                                              "e.g. 1,2."),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="Comma-separated data sets of the recipe to "
                                                                    "run (default: all)."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated methods of the recipe to run "
                                                                  "(default: all)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs (done / started / new) and what cannot "
                                                          "run here; run nothing."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Reproduce a paper's table: run its recipe (resumable run folders; finished runs
    are kept), compare each figure with our mean ± sd over the seeds (within | above |
    below: |ours - published| <= max(2 sd, 0.5 points)), and write OUT/comparison.md,
    .csv, .json and .html. Cells that cannot run here (data set, weights, method missing)
    are listed with how to get them; the rest still runs."""
    from clipadapt.cli.common import console, out_console, parse_seeds, quiet_libraries, require_path, run_safely
    from clipadapt.errors import ClipAdaptError

    def go():
        if list_:
            return _list(out_console)
        if name is None:
            raise ClipAdaptError("Name a table (`clipadapt reproduce --list` shows them), e.g. "
                                 "`clipadapt reproduce coop-16shot --data /data --out runs/coop-16shot`.")
        if data is None or out is None:
            raise ClipAdaptError(f"`clipadapt reproduce {name}` needs --data (the folder holding the data sets) and "
                                 "--out (where the runs and the comparison go).")
        require_path(data)  # a mistyped --data would list every data set as missing
        quiet_libraries()
        from clipadapt.reproduce import Options

        options = Options(data=data, weights=weights, overrides=list(set_),
                          seeds=list(parse_seeds(seeds)) if seeds else None,
                          datasets=_names(datasets), methods=_names(methods))
        if dry_run:
            return _dry_run(name, options, out, out_console)
        from clipadapt.reproduce import reproduce

        say = lambda message: console.print(message, highlight=False, soft_wrap=True)  # noqa: E731
        command = "clipadapt " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["reproduce"] else ""
        outcome = reproduce(name, options, out, progress=not quiet, notify=say, command=command)
        out_console.print(outcome.markdown, highlight=False, markup=False, soft_wrap=True)
        ran = outcome.ran
        out_console.print(f"{ran} run{'' if ran == 1 else 's'} trained, {len(outcome.results) - ran} already finished, "
                          f"{len({(b.method, b.dataset) for b in outcome.plan.blocked})} method x data set pairs "
                          f"not runnable here; wrote {out}/comparison.md, .csv, .json, .html", highlight=False,
                          soft_wrap=True)

    run_safely(go)


def _names(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _list(console) -> None:
    """Every shipped table; one that does not validate is shown with its error (exit 2)."""
    from clipadapt.errors import ClipAdaptError
    from clipadapt.reproduce.tables import load_table, shipped_tables

    broken = []
    for path in shipped_tables():
        try:
            table = load_table(path).table
        except ClipAdaptError as exc:
            broken.append(path.stem)
            console.print(f"{path.stem}\n    INVALID: {exc}\n", highlight=False, markup=False, soft_wrap=True)
            continue
        figures = [f for m in table.published.values() for d in m.values() for f in d.values()]
        given = sum(f is not None for f in figures)
        console.print(f"{table.name}  {table.title}\n"
                      f"    source: {table.source.paper}, arXiv {table.source.arxiv}, {table.source.table}\n"
                      f"    kind: {table.kind}; cells: {len(figures)} ({given} with a published figure, "
                      f"{len(table.unchecked)} not checked against the paper)\n",
                      highlight=False, markup=False, soft_wrap=True)
    if broken:
        raise ClipAdaptError(f"{len(broken)} table(s) do not validate: {', '.join(broken)}.")


def _dry_run(name: str, options, out: Path, console) -> None:
    from clipadapt.protocols.runner import cell_state
    from clipadapt.reproduce import plan_table

    plan = plan_table(name, options, out)
    for cell in plan.protocol.cells:
        extra = f" (+ scored on {', '.join(cell.evaluations)})" if cell.evaluations else ""
        console.print(f"{cell_state(out, cell):8} {out / cell.folder}{extra}", highlight=False, soft_wrap=True)
    from clipadapt.reproduce.outputs import blocked_groups

    for methods, datasets, missing in blocked_groups(plan.blocked):
        console.print(f"{'blocked':8} {', '.join(datasets)} / {', '.join(methods)}: {missing.reason}\n{'':9}"
                      f"how to get it: {missing.fetch}", highlight=False, markup=False, soft_wrap=True)
