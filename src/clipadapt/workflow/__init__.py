"""Whole runs, the layer the CLI, the demo, the benchmarks and library users call:
`train_run` (`train_seeds`: one per seed), `adapt_run`, `eval_run`, `extract_run` and
`predict_run`. Each run folder is written by one writer (`RunFolder`); the CLI only
parses options and prints outcomes.

The names are imported on first use (module `__getattr__`): `adapt` and `train` pull in
torch, open_clip and the methods (seconds), which a `predict --model` (onnxruntime) or a
command answering bad input must not pay for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

# public name -> the module of this package that defines it
_HOMES = {
    "AdaptOutcome": "adapt", "adapt_run": "adapt", "prepare_adapt_config": "adapt",
    "PredictOptions": "predict", "PredictOutcome": "predict", "predict_run": "predict",
    "RunFolder": "run_folder", "predictions_table": "run_folder", "prepare_run_dir": "run_folder",
    "write_evaluation": "run_folder",
    "RunOutcome": "train", "SeedsOutcome": "train", "eval_run": "train", "extract_run": "train", "train_run": "train",
    "train_seeds": "train",
}

__all__ = sorted(_HOMES)

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports on first use
    from clipadapt.workflow.adapt import AdaptOutcome, adapt_run, prepare_adapt_config
    from clipadapt.workflow.predict import PredictOptions, PredictOutcome, predict_run
    from clipadapt.workflow.run_folder import RunFolder, predictions_table, prepare_run_dir, write_evaluation
    from clipadapt.workflow.train import RunOutcome, SeedsOutcome, eval_run, extract_run, train_run, train_seeds


def __getattr__(name: str):
    """Import the module that defines `name` on first use and keep the name here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
