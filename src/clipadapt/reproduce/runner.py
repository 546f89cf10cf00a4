"""Run a plan's cells, resumably, with `clipadapt bench`'s runner.

few_shot, base_to_novel, transfer and standard cells are bench cells: `run_protocol` trains
each (`train_run`, resumed from its last epoch after an interruption), evaluates it and
writes bench.json last; a finished cell is read, never re-run. label_free cells are
`adapt` runs (microCLIP): adapted once, then `run_cell` reads the finished folder and
writes the same bench.json, so they resume by the same rule. An adapt run keeps no resume
state, so one interrupted before its end starts over.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from clipadapt.protocols.runner import CellResult, _backbone, cell_state, read_result, run_cell, run_protocol
from clipadapt.reproduce.recipe import Plan
from clipadapt.run_files import RunFiles


def run_plan(plan: Plan, out: Path, progress: bool = False,
             notify: Callable[[str], None] = lambda message: None) -> list[CellResult]:
    """Every runnable cell of the plan, finished ones read back; in the plan's order."""
    out = Path(out)
    if plan.kind != "label_free":
        return run_protocol(plan.protocol, out, progress=progress, notify=notify)
    out.mkdir(parents=True, exist_ok=True)
    from clipadapt.workflow import adapt_run

    backbones: dict[tuple, object] = {}
    results = []
    for number, cell in enumerate(plan.protocol.cells, 1):
        folder = out / cell.folder
        if cell_state(out, cell) == "done":
            results.append(CellResult(cell, read_result(folder, cell), ran=False))
            continue
        notify(f"[{number}/{len(plan.protocol.cells)}] {cell.label}: adapting")
        backbone = _backbone(backbones, cell)
        if not (folder / RunFiles.CARD).is_file():
            if folder.exists():  # an adapt run stopped before its card: no resume state, so it starts over
                shutil.rmtree(folder)
            adapt_run(cell.config, folder, progress=progress, backbone=backbone)
        results.append(CellResult(cell, run_cell(cell, folder, backbone, progress), ran=True))
    return results
