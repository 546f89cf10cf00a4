"""Whole runs from Python: `train`, `adapt`, `evaluate` and `bench`, each the workflow
function behind its command (clipadapt.workflow, clipadapt.protocols) with the command's
settings, checks and files; silent unless `progress=True`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from clipadapt.api.run import Run, load
from clipadapt.api.settings import as_override_texts, config_folder, raw_settings, resolve_config
from clipadapt.errors import ClipAdaptError

if TYPE_CHECKING:
    import pandas


def train(config, out: str | os.PathLike, overrides=None, *, resume: bool = False, restart: bool = False,
          progress: bool = False, device: str | None = None, **settings) -> Run:
    """`clipadapt train CONFIG --out OUT`: train, select on validation, evaluate on test,
    write the run folder, and return the run loaded from it. `config`: a YAML path, a dict
    or a RunConfig; `overrides`: the CLI's `--set` texts (["train.epochs=3"]) or a mapping
    ({"train.epochs": 3}); keywords `train__epochs=3` (a double underscore for each dot)
    too. Warnings (ClassTextWarning, NoProgressWarning, AtChanceWarning) are raised as
    Python warnings and kept in `run.warnings`; `run.metrics` holds the test metrics.

    >>> run = clipadapt.train({"data": {"format": "folder", "root": "pets"}}, "runs/pets",
    ...                       method__name="linear_probe", train__epochs=5)   # doctest: +SKIP
    """
    from clipadapt.workflow import train_run

    cfg = resolve_config(config, overrides, settings)
    outcome = train_run(cfg, Path(out), resume=resume, restart=restart, progress=progress)
    return _loaded(outcome.run_dir, outcome.warnings, device)


def adapt(config, out: str | os.PathLike, overrides=None, *, progress: bool = False, true_labels: bool = False,
          device: str | None = None, **settings) -> Run:
    """`clipadapt adapt CONFIG --out OUT`: label-free adaptation (microCLIP unless the config
    names another label-free method) on the unlabelled training images, then the test
    evaluation beside zero-shot CLIP (`run.card.metrics`, and `comparison` in the run
    folder's metrics.json). Settings as `train`'s.

    >>> run = clipadapt.adapt("configs/unsupervised/birds.yaml", "runs/birds")  # doctest: +SKIP
    """
    from clipadapt.workflow import adapt_run

    cfg = resolve_config(config, overrides, settings)
    outcome = adapt_run(cfg, Path(out), progress=progress, config_dir=config_folder(config), true_labels=true_labels)
    return _loaded(outcome.run_dir, list((outcome.metrics or {}).get("warnings", [])), device)


def evaluate(run, data=None, *, out: str | os.PathLike | None = None, progress: bool = False, overrides=None,
             **settings) -> dict:
    """`clipadapt eval RUN_DIR [--config DATA]`: the run's metrics on a test split. `run`: a
    Run or a run folder; `data`: None (the run's own test split), a config (YAML path,
    dict or RunConfig), or a dict of data settings alone ({"format": "folder", "root": ...})
    that replaces the run's data section. Writes the metrics, confusion matrices and
    predictions into `out` (default RUN_DIR/eval), as the command does; returns the metrics
    ({"mean": {...}, "attributes": {...}}).

    >>> clipadapt.evaluate(run)["mean"]["accuracy"]               # doctest: +SKIP
    0.93
    """
    from clipadapt.engine.checkpoint import read_card
    from clipadapt.workflow import eval_run

    folder = _run_folder(run)
    card = read_card(folder)
    if isinstance(data, Mapping) and "data" not in data and data:  # data settings alone: the run's config, new data
        raw, source = {**(card.config or {}), "data": dict(data)}, "data"
    elif data is None:
        raw, source = card.config or {}, f"{folder}/card.json"
    else:
        raw, source = raw_settings(data)
    from clipadapt.config import validate_overridden

    cfg = validate_overridden(raw, as_override_texts(overrides, settings), source=source)
    backbone = run.module.backbone if isinstance(run, Run) and run.module is not None else None
    return eval_run(folder, cfg, out=Path(out) if out is not None else None, progress=progress, backbone=backbone)


def bench(protocol: str | os.PathLike, out: str | os.PathLike, overrides=None, *, progress: bool = False,
          **settings) -> pandas.DataFrame:
    """`clipadapt bench PROTOCOL --out OUT`: every cell of a protocol file (few-shot K x seeds,
    base-to-novel, transfer) as a resumable run folder, then OUT/table.md, results.csv,
    results.json and report.html; returns results.csv's rows (one per method x data set x
    K x scored split), with the paper-style tables as markdown in `frame.attrs["tables"]`.

    >>> clipadapt.protocols("configs/bench/few_shot_tiny.yaml", "runs/bench").head()   # doctest: +SKIP
    """
    import pandas as pd

    from clipadapt.protocols import read_protocol, run_protocol
    from clipadapt.protocols.page import write_outputs
    from clipadapt.protocols.tables import tidy_rows

    read = read_protocol(Path(protocol), as_override_texts(overrides, settings))
    results = run_protocol(read, Path(out), progress=progress)
    made = write_outputs(read, results, Path(out))
    frame = pd.DataFrame(tidy_rows(read, results))
    frame.attrs["tables"] = [table.markdown() for table in made]
    return frame


def _run_folder(run) -> Path:
    """The folder of a Run or a path; an exported file has none."""
    if isinstance(run, Run):
        if run.module is None:
            raise ClipAdaptError(f"{run.path} is an exported ONNX file; evaluate the run folder it was exported from.")
        return run.path
    from clipadapt.data.inputs import missing_path
    from clipadapt.run_files import RUN_FOLDER

    folder = Path(run).expanduser()
    if not folder.exists():
        raise ClipAdaptError(missing_path(folder, *RUN_FOLDER))
    return folder


def _loaded(run_dir: Path, notes: list[str], device: str | None) -> Run:
    """The run just written, with the warnings the run raised."""
    run = load(run_dir, device=device)
    run.warnings = list(dict.fromkeys([*notes, *run.warnings]))
    return run
