"""The one writer of a run folder: config, history, evaluation, checkpoint + card, curves,
report, and (through the engine's `RunState`, which `RunFolder` extends) the best state,
the resume state and the skipped images. `train_run` and `adapt_run` write through it, so
every run folder has the same files and `eval`, `predict`, `report` and `export` read them
alike. Every file's name is in `clipadapt.run_files.RunFiles`."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from clipadapt.config import RunConfig, dump_config
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.splits import save_shots
from clipadapt.engine.checkpoint import write_checkpoint
from clipadapt.engine.run_state import RunState, resume_epochs_done
from clipadapt.errors import ClipAdaptError
from clipadapt.io import atomic_write, write_json, write_text
from clipadapt.metrics.classification import write_confusion_csv
from clipadapt.metrics.plots import plot_confusion, plot_curves
from clipadapt.predict.columns import prediction_columns
from clipadapt.report.html import write_report_or_warn
from clipadapt.run_files import RunFiles

F = RunFiles
CARD, RESUME_STATE, FAILURE_NOTE = F.CARD, F.RESUME_STATE, F.FAILURE_NOTE  # the ones named in messages
RESUME_FILES = (F.RESUME_INFO, F.RESUME_STATE)  # spent once the run is finished; the state goes last
# What a run writes before it has anything worth keeping: a folder the failed run created, holding
# only these, is removed. Anything else (a resume state, a user's file, a cache) keeps the folder.
DISPOSABLE = {F.CONFIG, F.SHOTS, F.SKIPPED, F.HISTORY, F.CHECKPOINT, F.FAILURE_NOTE}
# What --restart discards: the interrupted run's progress and anything that could pass for its result.
PROGRESS = (*RESUME_FILES, F.CHECKPOINT, F.CARD, F.HISTORY, F.METRICS, F.FAILURE_NOTE)


def _silent(line: str) -> None:
    """The default `notify`: a library caller hears nothing."""


def prepare_run_dir(out: Path, resume: bool, restart: bool = False,
                    notify: Callable[[str], None] | None = None) -> Path:
    """Create the run folder. A finished run (card.json, no resume state) is never
    overwritten. An interrupted one (a resume state) is continued (`resume`), discarded
    (`restart`), or refused: running over it without either would silently throw its
    epochs away. `notify` hears what was discarded, or that there was nothing to resume."""
    out, notify = Path(out), notify or _silent
    if resume and restart:
        raise ClipAdaptError("--resume and --restart contradict each other: --resume continues the interrupted run "
                             f"in {out}, --restart discards it and starts over. Choose one.")
    done = resume_epochs_done(out)
    if finished_run(out):
        raise ClipAdaptError(_finished_message(out, resume, restart))
    if done is not None and restart:
        discard_progress(out)
        notify(f"--restart: discarded the interrupted run in {out} ({_epochs(done)} done); starting from epoch 1")
    elif done is not None and not resume:
        raise ClipAdaptError(f"{out} holds an interrupted run ({_epochs(done)} done, in {out / RESUME_STATE}). "
                             "Add --resume to continue it, or --restart to discard its progress and start over.")
    elif done is None and resume:
        notify(f"nothing to resume in {out} (no {RESUME_STATE}): starting from epoch 1")
    out.mkdir(parents=True, exist_ok=True)
    return out


def finished_run(out: Path) -> bool:
    """A folder holding a finished run: card.json, and no resume state left to spend."""
    return (Path(out) / CARD).is_file() and resume_epochs_done(out) is None


def _epochs(done: int) -> str:
    """'3 epochs' / '1 epoch'; -1 (an unreadable state) is 'some epochs'."""
    return "some epochs" if done < 0 else f"{done} epoch{'' if done == 1 else 's'}"


def _finished_message(out: Path, resume: bool, restart: bool) -> str:
    """Why a finished run is not run over, in the words of the option the user gave."""
    if resume:
        return f"{out} already holds a finished run ({CARD}): nothing to resume. Choose another --out, or delete it first."
    if restart:
        return (f"{out} already holds a finished run ({CARD}); --restart only discards an interrupted run. "
                "Choose another --out, or delete it first.")
    return f"{out} already holds a finished run. Choose another --out, or delete it first."


def discard_progress(out: Path) -> None:
    """Remove an interrupted run's progress (resume state, best checkpoint, partial results)."""
    for name in PROGRESS:
        (Path(out) / name).unlink(missing_ok=True)


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of `path` that does not exist yet (what creating it will make), or None."""
    path = Path(path).absolute()
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


class RunFolder(RunState):
    """A run folder being written: the engine's `RunState` (best state, resume state,
    skipped images; `Runner.fit` writes through this object) and every other file of the
    run. `write=False` (a rank > 0 of a torchrun job) writes nothing and checks nothing:
    rank 0 prepares the folder. `restart` discards an interrupted run's progress; `notify`
    hears the one-line notes of the folder's life."""

    def __init__(self, path: Path, resume: bool = False, write: bool = True, restart: bool = False,
                 notify: Callable[[str], None] | None = None):
        self.notify = notify or _silent
        self.created = _first_missing(path)  # only a folder this run made may be removed after a failure
        if write:
            path = prepare_run_dir(path, resume, restart, self.notify)
        else:
            Path(path).mkdir(parents=True, exist_ok=True)
        super().__init__(path, write)

    @contextmanager
    def failure_recorded(self):
        """Around a whole run: when it raises (bad data, a crash, Ctrl-C), leave no folder
        if this run created it and it holds nothing worth keeping; otherwise keep it with
        FAILED.txt saying why and how to go on. A resume state is never removed."""
        try:
            yield self
        except BaseException as exc:
            if self.write:
                try:
                    self._after_failure(exc)
                except OSError:  # the note is a courtesy: never hide the run's own error behind it
                    pass
            raise

    def _after_failure(self, exc: BaseException) -> None:
        if self._disposable():
            self._remove()
            return
        done = resume_epochs_done(self.path)
        write_text(self.path / FAILURE_NOTE, failure_note(exc, done))
        if done is not None and done > 0:
            self.notify(f"the interrupted run is kept in {self.path} ({_epochs(done)} done): add --resume to "
                        "continue it, or --restart to start over")

    def _disposable(self) -> bool:
        """True when this run created the folder and wrote nothing into it worth keeping."""
        if self.created is None or not self.path.is_dir() or (self.path / RESUME_STATE).exists():
            return False
        return all(entry.is_file() and (entry.name in DISPOSABLE or _temporary(entry.name))
                   for entry in self.path.iterdir())

    def _remove(self) -> None:
        """The run folder, then the empty parents this run created for it (e.g. OUT of OUT/seed-0)."""
        shutil.rmtree(self.path)
        top = self.created
        for folder in self.path.absolute().parents:
            if folder != top and top not in folder.parents:
                break
            try:
                folder.rmdir()  # only while empty: another run's folder beside it stays
            except OSError:
                break

    def write_config(self, cfg: RunConfig) -> None:
        """config.yaml: the settings as the run resolved them."""
        if self.write:
            write_text(self.file(F.CONFIG), dump_config(cfg))

    def write_shots(self, images: LabelledImages) -> None:
        """shots.json: the K-shot training images, so the subset can be reproduced."""
        if self.write:
            save_shots(self.file(F.SHOTS), images, np.arange(len(images)))

    def write_history(self, history: list[dict]) -> None:
        if self.write:
            write_json(self.file(F.HISTORY), history)

    def write_evaluation(self, metrics: dict, probs: list[np.ndarray], images: LabelledImages,
                         threshold: float = 0.5) -> None:
        """metrics.json, predictions.csv and the confusion matrices of a test evaluation."""
        if self.write:
            write_evaluation(self.path, metrics, probs, images, threshold)

    def finish(self, method, card: dict, history: list[dict], curve_keys: tuple[str, ...] | None = None) -> None:
        """The trained tensors with the card, the training curves, and the report; then the
        failure note and the resume state are spent: a folder with card.json and no resume
        state is a finished run."""
        if not self.write:
            return
        write_checkpoint(self.path, method, card)
        if history:
            plot_curves(history, self.file(F.CURVES), **({"keys": curve_keys} if curve_keys else {}))
        write_report_or_warn(self.path)  # a failing figure only warns
        (self.path / FAILURE_NOTE).unlink(missing_ok=True)  # an earlier failure is history now
        # The resume state goes last: a run killed anywhere before this still resumes, so
        # card.json without a resume state always means every file is written.
        for name in RESUME_FILES:
            (self.path / name).unlink(missing_ok=True)


def write_evaluation(out: Path, metrics: dict, probs: list[np.ndarray], images: LabelledImages,
                     threshold: float = 0.5) -> None:
    """metrics.json, predictions.csv, and per-attribute confusion matrices (CSV, PNG) or,
    for a multi-label task, one per-attribute table (per_attribute.csv)."""
    write_json(out / F.METRICS, metrics)
    task = images.task
    if task.multilabel:
        table = pd.DataFrame(metrics["multilabel"]["per_attribute"])
        atomic_write(out / F.PER_ATTRIBUTE, lambda p: table.to_csv(p, index=False))
    for attr in () if task.multilabel else task.attributes:
        cm = np.asarray(metrics["attributes"][attr.name]["confusion_matrix"])
        write_confusion_csv(out / F.confusion(attr.name, "csv"), cm, list(attr.classes), normalise=False)
        plot_confusion(cm, list(attr.classes), out / F.confusion(attr.name, "png"), title=f"{attr.name} (row-normalised)")
    predictions = predictions_table(images, probs, threshold)
    atomic_write(out / F.PREDICTIONS, lambda p: predictions.to_csv(p, index=False))


def write_seeds_summary(out: Path, seeds: list[int], summary: dict) -> None:
    """OUT/seeds_summary.json of `train --seeds`: the seeds and the mean ± std of their metrics."""
    write_json(Path(out) / F.SEEDS_SUMMARY, {"seeds": list(seeds), "summary": summary})


def predictions_table(images: LabelledImages, probs: list[np.ndarray], threshold: float = 0.5) -> pd.DataFrame:
    """One row per image: path, per attribute the true label (if any, column
    '<attribute>:true'), then the prediction columns of `prediction_columns`."""
    task = images.task
    table: dict = {"path": [str(p) for p in images.paths]}
    for a, attr in enumerate(task.attributes):
        labels = images.labels[:, a]
        if (labels >= 0).any():
            table[f"{attr.name}:true"] = labels if task.multilabel else [attr.classes[y] if y >= 0 else "" for y in labels]
    predicted = prediction_columns(task, probs, threshold)
    # keep each attribute's true label next to its prediction
    ordered = {"path": table.pop("path")}
    for attr in task.attributes:
        if f"{attr.name}:true" in table:
            ordered[f"{attr.name}:true"] = table[f"{attr.name}:true"]
        ordered.update({k: v for k, v in predicted.items() if k == attr.name or k.startswith(f"{attr.name}:p")})
    return pd.DataFrame(ordered)


def _temporary(name: str) -> bool:
    """A temporary file of an atomic write (`.NAME.HOST-PID.XXXXXXXX.tmp`, clipadapt.io)."""
    return name.startswith(".") and name.endswith((".tmp", ".creating", ".removing"))


def failure_note(exc: BaseException, done: int | None) -> str:
    """FAILED.txt: when and why the run stopped, and the way on (resume, or run again)."""
    if isinstance(exc, ClipAdaptError):
        why = str(exc)
    elif isinstance(exc, KeyboardInterrupt):
        why = "interrupted (Ctrl-C)"
    else:
        why = f"{type(exc).__name__}: {exc}"
    if done is not None:
        way_on = (f"The resume state ({RESUME_STATE}, {_epochs(done)}) is kept: run the same command with --resume "
                  "to continue, or with --restart to start over.")
    else:
        way_on = "Fix the cause and run the same command again."
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return f"This run stopped at {stamp}: {why}\n{way_on}\nThis note is removed when a run finishes in this folder.\n"
