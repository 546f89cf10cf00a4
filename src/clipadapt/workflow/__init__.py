"""Whole runs, the layer the CLI, the demo, the benchmarks and library users call:
`train_run`, `adapt_run`, `eval_run`, `extract_run` and `predict_run`. Each run folder is
written by one writer (`RunFolder`); the CLI only parses options and prints outcomes."""

from clipadapt.workflow.adapt import COMPARISON_ROWS, AdaptOutcome, adapt_run, prepare_adapt_config
from clipadapt.workflow.predict import PredictOptions, PredictOutcome, predict_run
from clipadapt.workflow.run_folder import RunFolder, predictions_table, prepare_run_dir, write_evaluation
from clipadapt.workflow.train import RunOutcome, eval_run, extract_run, train_run

__all__ = [
    "COMPARISON_ROWS", "AdaptOutcome", "PredictOptions", "PredictOutcome", "RunFolder", "RunOutcome", "adapt_run",
    "eval_run", "extract_run", "predict_run", "predictions_table", "prepare_adapt_config", "prepare_run_dir",
    "train_run", "write_evaluation",
]
