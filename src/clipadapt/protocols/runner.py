"""Run a protocol's cells, each its own resumable run folder, and collect their scores.

A cell is finished when its folder holds `bench.json` (written last, after the training run
and every evaluation); a finished cell is read, never re-run. A cell whose training run
finished (card.json) but whose evaluations did not only runs the missing evaluations
(an evaluation is finished when its folder holds predictions.csv, the last file written);
an interrupted training run resumes from its resume state (`train_run(resume=True)`).
Every cell uses the config's feature store (features.dir), so the image features of a
data set are computed once for the whole grid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clipadapt.protocols.protocol import Cell, Protocol
from clipadapt.io import write_json
from clipadapt.errors import ClipAdaptError
from clipadapt.metrics.table import SUMMARY
from clipadapt.run_files import RunFiles

RESULT = "bench.json"
SCORES = SUMMARY  # what a cell reports


@dataclass
class CellResult:
    """A finished cell: its scores per evaluated split ("test", "novel" or a target data set)."""

    cell: Cell
    scores: dict[str, dict[str, float]]
    ran: bool  # False: read from an earlier invocation


def cell_state(out: Path, cell: Cell) -> str:
    """done | trained (evaluations missing) | started (training interrupted) | new."""
    folder = Path(out) / cell.folder
    if (folder / RESULT).is_file():
        return "done"
    if (folder / RunFiles.CARD).is_file():
        return "trained"
    return "started" if folder.is_dir() else "new"


def run_protocol(protocol: Protocol, out: Path, progress: bool = False,
                 notify: Callable[[str], None] = lambda message: None) -> list[CellResult]:
    """Run every cell not finished yet (in the protocol's order) and return all results."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backbones: dict[tuple, object] = {}
    results = []
    for number, cell in enumerate(protocol.cells, 1):
        state = cell_state(out, cell)
        where = f"[{number}/{len(protocol.cells)}] {cell.label}"
        if state == "done":
            results.append(CellResult(cell, read_result(out / cell.folder, cell), ran=False))
            continue
        notify(f"{where}: {'resuming' if state == 'started' else 'evaluating' if state == 'trained' else 'running'}")
        scores = run_cell(cell, out / cell.folder, _backbone(backbones, cell), progress)
        results.append(CellResult(cell, scores, ran=True))
        notify(f"{where}: " + ", ".join(f"{name} {100 * s['accuracy']:.2f}" for name, s in scores.items()))
    return results


def run_cell(cell: Cell, folder: Path, backbone, progress: bool) -> dict[str, dict[str, float]]:
    """Train (or resume, or skip when finished) and evaluate one cell; write bench.json last."""
    from clipadapt.workflow import eval_run, train_run

    if not (folder / RunFiles.CARD).is_file():
        outcome = train_run(cell.config, folder, resume=True, progress=progress, backbone=backbone)
        metrics = outcome.metrics
    else:
        metrics = _read_json(folder / RunFiles.METRICS)
    if not metrics:
        raise ClipAdaptError(f"{folder}: the run has no test split to score; a benchmark cell needs one.")
    scores = {"test": _scores(metrics)}
    for name, config in cell.evaluations.items():
        results = folder / f"eval-{name}"
        if (results / RunFiles.PREDICTIONS).is_file():
            scores[name] = _scores(_read_json(results / RunFiles.METRICS))
        else:
            scores[name] = _scores(eval_run(folder, config, out=results, progress=progress, backbone=backbone))
    write_json(folder / RESULT, {"dataset": cell.dataset, "method": cell.method, "shots": cell.shots,
                                 "seed": cell.seed, "scores": scores, "config": _compared(cell.config)})
    return scores


# Settings that do not change a cell's result: a finished cell stays valid when they change.
NOT_COMPARED = {"features": None, "train": ("device", "num_workers", "eval_batch_size", "threads")}


def _compared(config) -> dict:
    from clipadapt.protocols.protocol import needs_no_training

    raw = config.model_dump(mode="json")
    if needs_no_training(config):  # zeroshot: no train.* setting changes it
        raw.pop("train", None)
    for section, keys in NOT_COMPARED.items():
        for key in keys or list(raw.get(section, {})):
            raw.get(section, {}).pop(key, None)
    return raw


def read_result(folder: Path, cell: Cell) -> dict[str, dict[str, float]]:
    """A finished cell's scores; a cell run with other settings than the protocol's now is
    an error (its scores would be mixed into the table unseen)."""
    result = _read_json(folder / RESULT)
    stored, wanted = result.get("config"), _compared(cell.config)
    if stored is not None and stored != wanted:
        changed = sorted(_differences(stored, wanted))
        raise ClipAdaptError(
            f"{folder} was run with other settings than the protocol gives it now ({', '.join(changed[:6])}"
            f"{' ...' if len(changed) > 6 else ''}). Delete that folder to run it again, or use another --out.")
    return result["scores"]


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = set(a) | set(b)
    out = []
    for key in keys:
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}: {x!r} -> {y!r}")
    return out


def _scores(metrics: dict) -> dict[str, float]:
    return {key: metrics["mean"][key] for key in SCORES}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ClipAdaptError(f"{path} cannot be read ({exc}); delete the cell's folder to run it again.") from None


def _backbone(cache: dict, cell: Cell):
    """One backbone per (name, weights): building a ViT-B/16 for each of 165 cells would
    cost more than many of the cells."""
    from clipadapt.backbone import open_backbone

    bb = cell.config.backbone
    key = (bb.name, bb.pretrained, bb.tag)
    if key not in cache:
        cache[key] = open_backbone(bb)  # each cell's run sets its own preprocessing on it
    return cache[key]
