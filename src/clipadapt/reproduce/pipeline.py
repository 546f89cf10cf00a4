"""`clipadapt reproduce NAME`: a paper's table in one call, recipe -> runs -> comparison.

The table (reproduce.tables) gives the recipe; the plan (reproduce.recipe) turns it into
run folders under OUT and lists what cannot run here; the runner (reproduce.runner)
trains what is not finished yet; the finished folders' metrics (reproduce.measure) meet
the published figures (reproduce.compare) in OUT/comparison.* (reproduce.outputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clipadapt.protocols.runner import CellResult
from clipadapt.reproduce.compare import Row, compare
from clipadapt.reproduce.measure import measure
from clipadapt.reproduce.outputs import write_comparison
from clipadapt.reproduce.recipe import Options, Plan, make_plan
from clipadapt.reproduce.runner import run_plan
from clipadapt.reproduce.tables import PROTOCOL_KINDS, load_table


@dataclass
class Outcome:
    """What a reproduction ran and found; `markdown` is OUT/comparison.md."""

    plan: Plan
    results: list[CellResult]
    rows: list[Row]
    markdown: str

    @property
    def ran(self) -> int:
        return sum(r.ran for r in self.results)


def plan_table(name: str | Path, options: Options, out: Path) -> Plan:
    """The plan alone (what --dry-run shows)."""
    return make_plan(load_table(name), options, Path(out))


def reproduce(name: str | Path, options: Options, out: Path, progress: bool = False,
              notify: Callable[[str], None] = lambda message: None, command: str = "") -> Outcome:
    """Run (or resume) every runnable cell of table `name` and write the comparison."""
    out = Path(out)
    plan = plan_table(name, options, out)
    results = run_plan(plan, out, progress=progress, notify=notify)
    table = plan.source.table
    found = measure(table.kind, table.metrics, results, out)
    rows = compare(table, found, plan.blocked, plan.methods, plan.datasets)
    text = write_comparison(out, table, rows, plan.blocked, command)
    if results and table.kind in PROTOCOL_KINDS:  # the bench's paper-style table and figure beside it
        from clipadapt.protocols.page import write_outputs

        write_outputs(plan.protocol, results, out, command)
    return Outcome(plan, results, rows, text)
