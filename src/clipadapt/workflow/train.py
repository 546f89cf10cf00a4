"""Supervised runs: train (+ select + evaluate + write the run folder), evaluate a run on
any labelled data, extract features ahead of training."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from clipadapt.backbone import apply_preprocessing, open_backbone
from clipadapt.config import RunConfig
from clipadapt.data.formats import build_splits
from clipadapt.engine.card import RunCard
from clipadapt.engine.calibrate import calibrate_run, require_validation
from clipadapt.engine.checkpoint import build_card, load_run, read_card
from clipadapt.engine.thresholds import compare_thresholds
from clipadapt.engine.defaults import resolve_train_defaults
from clipadapt.engine.distributed import is_main_process
from clipadapt.engine.progress import (chance_check, no_progress_message, no_progress_reasons,
                                      selected_balanced_accuracy)
from clipadapt.engine.devices import seed_everything
from clipadapt.engine.trainer import Runner
from clipadapt.metrics.aggregate import aggregate_seeds
from clipadapt.metrics.table import resolve_monitor
from clipadapt.errors import AtChanceWarning, ClassTextWarning, ClipAdaptError, NoProgressWarning
from clipadapt.methods import build_method
from clipadapt.methods.text_check import check_class_texts
from clipadapt.predict.tracks import track_scores
from clipadapt.report.html import write_report_or_warn
from clipadapt.run_files import RunFiles
from clipadapt.workflow.run_folder import RunFolder, finished_run, write_evaluation, write_seeds_summary
from clipadapt.threads import current_threads


@dataclass
class RunOutcome:
    """What a run wrote: its folder, test metrics (or None), the card, and the warnings it
    raised (also in metrics.json and the card: classes the text cannot tell apart, no progress).
    `card` is None on a rank > 0 of a torchrun job: rank 0 evaluates and writes the card."""

    run_dir: Path
    metrics: dict | None
    card: RunCard | None
    warnings: list[str] = field(default_factory=list)


def train_run(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True, backbone=None,
              restart: bool = False, notify: Callable[[str], None] | None = None) -> RunOutcome:
    """Train cfg.method on cfg.data, select on validation, evaluate on test, write the run folder:
    config.yaml, checkpoint.safetensors, card.json, history.json, metrics.json, confusion
    matrices (CSV + PNG) and test predictions. An interrupted run in `out` is continued
    (`resume`), discarded (`restart`) or refused; a run that fails leaves no folder, or one
    with FAILED.txt (`RunFolder.failure_recorded`). `notify` hears one-line notes (where a
    resumed run starts, what was discarded)."""
    main = is_main_process()  # under torchrun, rank 0 alone writes the run folder
    folder = RunFolder(out, resume, write=main, restart=restart, notify=notify)
    with folder.failure_recorded():
        return _train(cfg, folder, resume, progress, backbone, main, notify)


@dataclass
class SeedsOutcome:
    """Several seeds of one run: the seeds, the summary written to OUT/seeds_summary.json
    (mean ± std of the seeds' test metrics; {} without any) and how many seeds it holds.
    `written` is False on a rank > 0 of a torchrun job, where rank 0 writes and reports."""

    seeds: list[int]
    summary: dict
    runs: int
    written: bool = True


def train_seeds(cfg: RunConfig, out: Path, seeds: list[int], resume: bool = False, progress: bool = True,
                restart: bool = False, notify: Callable[[str], None] | None = None) -> SeedsOutcome:
    """One `train_run` per seed in OUT/seed-<s>, then OUT/seeds_summary.json. With `resume`,
    a seed that already finished is kept (its test metrics read back) and the others continue."""
    notify = notify or (lambda line: None)
    results = []
    for seed in seeds:
        folder = Path(out) / RunFiles.seed_folder(seed)
        if resume and finished_run(folder):
            notify(f"seed {seed}: finished in {folder}, kept")
            kept = folder / RunFiles.METRICS
            results += [json.loads(kept.read_text())] if kept.is_file() else []
            continue
        run_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
        outcome = train_run(run_cfg, folder, resume=resume, progress=progress, restart=restart, notify=notify)
        if outcome.card is None:  # a rank > 0 of a torchrun job: rank 0 writes the summary
            return SeedsOutcome(list(seeds), {}, len(results), written=False)
        results += [outcome.metrics] if outcome.metrics else []
    summary = aggregate_seeds(results) if results else {}
    write_seeds_summary(out, seeds, summary)
    return SeedsOutcome(list(seeds), summary, len(results))


def _train(cfg: RunConfig, folder: RunFolder, resume: bool, progress: bool, backbone, main: bool,
           notify: Callable[[str], None] | None) -> RunOutcome:
    """The steps of `train_run` inside its run folder."""
    out = folder.path
    folder.write_config(cfg)
    seed_everything(cfg.train.seed)
    splits = build_splits(cfg.data)
    require_validation(cfg, splits)  # calibration / tuned thresholds without a validation split: before any work
    if cfg.data.shots:
        folder.write_shots(splits.train)
    # a backbone passed in (a bench grid shares one) takes this run's preprocessing
    backbone = open_backbone(cfg.backbone) if backbone is None else apply_preprocessing(backbone, cfg.backbone)
    method = build_method(cfg.method.name, backbone, splits.task, cfg.method.params)
    method.set_thresholds([cfg.train.threshold] * len(method.task))  # until train.thresholds chooses
    # Classes the text classifier cannot tell apart: a training run stops here, before any
    # work; a run that does not train (zero-shot, epochs 0) reports them with its result.
    notes = check_class_texts(method, stop=method.trains and cfg.train.epochs > 0, name_unknown=True)
    cfg = resolve_train_defaults(cfg, type(method), len(splits.train))
    folder.write_config(cfg)  # with the defaults the run resolved
    for note in notes:
        warnings.warn(note, ClassTextWarning, stacklevel=2)
    runner = Runner(method, cfg, progress=progress)
    if splits.test is not None and runner.uses_store(train=False) and main:
        runner.source(splits.test, train=False)  # read every test image now: a bad one fails before training
    fit = runner.fit(splits, folder, resume=resume, notify=notify)  # the engine writes through the folder
    if not main:
        return RunOutcome(out, None, None)  # rank 0 evaluates on the full test split and writes
    # train.calibrate and train.thresholds: fitted on val, after selection
    calibration, thresholds = calibrate_run(runner, splits, cfg)
    folder.write_history(fit.history)
    reasons = no_progress_reasons(fit.history, fit.best_epoch)
    if reasons:
        notes.append(no_progress_message(method, reasons))
        warnings.warn(notes[-1], NoProgressWarning, stacklevel=2)
    metrics = None
    if splits.test is not None and len(splits.test):
        metrics, probs = runner.evaluate(splits.test, description="test")
        compared = compare_thresholds(splits.test.labels, probs, thresholds, method.task.names)
        if compared:  # tuned thresholds: the test scores at them and at the fixed ones
            metrics["thresholds"] = compared
        if splits.test.tracks is not None:  # a track column: scored per track too (predict/tracks.py)
            metrics["tracks"] = track_scores(splits.test.labels, probs, splits.test.tracks, method.task,
                                             method.thresholds())
    at_chance = _at_chance(runner, splits, fit, metrics, reasons, notes)
    flags = {"no_progress": bool(reasons), "at_chance": at_chance, **({"warnings": notes} if notes else {})}
    if metrics is not None:
        metrics.update(flags)
        folder.write_evaluation(metrics, probs, splits.test, method.thresholds())
    card = build_card(
        method, seed=cfg.train.seed, processes=runner.dist.world, config=cfg.model_dump(mode="json"),
        cpu_threads=current_threads(),  # the count its numbers were computed at (clipadapt/threads.py)
        data={"format": cfg.data.format, "train": len(splits.train), "val": len(splits.val) if splits.val else 0,
              "test": len(splits.test) if splits.test else 0},
        selection={"monitor": resolve_monitor(cfg.train.monitor, method.task.multilabel),
                   "best_epoch": fit.best_epoch, "best_score": fit.best_score,
                   "stopped_early": fit.stopped_early, "epochs_run": len(fit.history)},
        metrics=metrics["mean"] if metrics else None,
        **({"calibration": calibration} if calibration else {}),
        **({"thresholds": thresholds} if thresholds else {}),
        **flags,
    )
    folder.finish(method, card, fit.history)
    return RunOutcome(out, metrics, card, notes)


def _at_chance(runner: Runner, splits, fit, test_metrics: dict | None, reasons: list[str], notes: list[str]) -> bool:
    """Is the selected model at chance on validation (test without one)? Trained or not: a
    zero-shot run has no history for `no_progress` to read. Warns (and adds to `notes`)
    unless the "did not learn" line already said it."""
    has_val = splits.val is not None and len(splits.val) > 0
    score, split = selected_balanced_accuracy(
        fit.history, fit.best_epoch, lambda: runner.evaluate(splits.val, "validate", show=False)[0] if has_val else None,
        test_metrics)
    at_chance, note = chance_check(runner.method, score, split, reasons, trained=bool(fit.history))
    if note:
        notes.append(note)
        warnings.warn(note, AtChanceWarning, stacklevel=3)
    return at_chance


def eval_run(run_dir: Path, cfg: RunConfig | None = None, out: Path | None = None, progress: bool = True,
             backbone=None, retrieval: str | None = None) -> dict:
    """Evaluate a trained run on the test split of `cfg.data` (default: the run's own data).
    `retrieval`: a file of attribute queries, or "default", scored as searches into
    metrics["retrieval"] (clipadapt.search.retrieval, docs/search.md).
    Other classes than the run's (another data set, the novel classes) are scored as
    `engine.class_lists.method_for_classes` allows; metrics["notes"] then says how.
    `backbone`: one already built, to reuse (it must be the run's)."""
    from clipadapt.engine.class_lists import method_for_classes

    card = read_card(run_dir)
    if cfg is None:
        cfg = RunConfig.model_validate(card.config)
    method, card = load_run(run_dir, backbone=backbone)
    splits = build_splits(cfg.data)
    method, notes = method_for_classes(method, splits.task, source=str(run_dir))
    if notes:  # rebuilt for other class names: those may be ones its text side cannot tell apart
        for note in check_class_texts(method, stop=False, name_unknown=True) if method.scores_any_classes else []:
            warnings.warn(note, ClassTextWarning, stacklevel=2)
    if splits.test is None or not len(splits.test):
        raise ClipAdaptError("The data has no test split to evaluate on; set data.test_manifest or use a format with a test split.")
    if cfg.train.threshold != card.threshold:  # --set train.threshold=X: every attribute decides at X
        method.set_thresholds([cfg.train.threshold] * len(method.task))
    runner = Runner(method, cfg, progress=progress)
    metrics, probs = runner.evaluate(splits.test, description="test")
    if notes:
        metrics["notes"] = notes
    compared = compare_thresholds(splits.test.labels, probs, card.thresholds, method.task.names) \
        if splits.task.multilabel and cfg.train.threshold == card.threshold else None
    if compared:
        metrics["thresholds"] = compared
    if splits.test.tracks is not None:  # a track column: scored per track too (predict/tracks.py)
        metrics["tracks"] = track_scores(splits.test.labels, probs, splits.test.tracks, method.task,
                                         method.thresholds())
    if retrieval:
        from clipadapt.search.retrieval import retrieval_metrics

        metrics["retrieval"] = retrieval_metrics(retrieval, splits.task, splits.test.labels, probs)
    results = Path(out or Path(run_dir) / RunFiles.EVAL)
    write_evaluation(results, metrics, probs, splits.test, method.thresholds())
    write_report_or_warn(run_dir, results=results)
    return metrics


def extract_run(cfg: RunConfig, progress: bool = True, ray=None) -> dict:
    """Fill the feature store for every split of cfg.data (ahead of training); `ray`
    (a `clipadapt.distributed.ray_extract.RayExtraction`) runs the encoding on Ray."""
    splits = build_splits(cfg.data)
    backbone = open_backbone(cfg.backbone)
    method = build_method(cfg.method.name, backbone, splits.task, cfg.method.params)
    runner = Runner(method, cfg, progress=progress)
    if not (runner.uses_store(train=True) and runner.uses_store(train=False)):
        raise ClipAdaptError(
            f"Nothing to extract: method '{method.name}' trains on the image path, or features.cache=off, "
            "or train.end_to_end=true."
        )
    named = [(name, images, train) for name, images, train in
             (("train", splits.train, True), ("val", splits.val, False), ("test", splits.test, False))
             if images is not None and len(images)]
    if ray is not None:
        return ray.run(runner, named, progress=progress)
    done = {}
    for name, images, train in named:
        src = runner.source(images, train=train)
        done[name] = {"images": len(images), "views": src.store.done.shape[1], "key": src.key}
    return done
