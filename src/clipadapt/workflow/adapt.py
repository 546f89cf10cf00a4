"""Label-free adaptation runs (microCLIP, SPEC 3): zero-shot heads scored first, then
self-training on the unlabelled train images, then the test evaluation, written through
the same run-folder writer as a supervised run. Any method whose training plan is
self-training runs here; what its step does and which heads it compares come from it
(`Method.self_training()`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipadapt.backbone import apply_preprocessing, open_backbone
from clipadapt.config import RunConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.formats import build_splits
from clipadapt.engine.checkpoint import build_card
from clipadapt.engine.devices import seed_everything
from clipadapt.engine.progress import (chance_check, no_progress_message, no_progress_reasons,
                                      selected_balanced_accuracy)
from clipadapt.engine.selftrain import SelfTrainer
from clipadapt.engine.trainer import Runner
from clipadapt.errors import AtChanceWarning, ClassTextWarning, ClipAdaptError, NoProgressWarning
from clipadapt.methods import METHODS, build_method
from clipadapt.methods.microclip.method import resolve_descriptions
from clipadapt.methods.text_check import check_class_texts
from clipadapt.metrics.table import SUMMARY
from clipadapt.task import MISSING
from clipadapt.workflow.run_folder import RunFolder
from clipadapt.threads import current_threads


@dataclass
class AdaptOutcome:
    """What `adapt_run` wrote: the run folder, test metrics of the method (None without a
    test split), the comparison table {row: {accuracy, macro_f1}}, the history and card;
    `rows`: each comparison row's label, in the order a table shows them."""

    run_dir: Path
    metrics: dict | None
    comparison: dict
    history: list[dict]
    card: dict
    rows: dict[str, str] = field(default_factory=dict)


LABEL_FREE_DEFAULT = "microclip"  # the method `clipadapt adapt` runs when a config names none


def prepare_adapt_config(cfg: RunConfig, config_dir: Path | None = None) -> RunConfig:
    """The config an adapt run uses: a label-free method (LABEL_FREE_DEFAULT unless the
    config names one), its recipe (`train_defaults`) for unset train.* keys, no validation
    split unless asked (there are no labels to select with), and
    method.params.descriptions resolved (relative paths against `config_dir` first;
    default data.root/descriptions.json when that file exists)."""
    name = cfg.method.name if "name" in cfg.method.model_fields_set else LABEL_FREE_DEFAULT
    method_cls = METHODS.get(name)
    if method_cls.training_plan != "self_training":
        label_free = [m for m in METHODS.names() if METHODS.get(m).training_plan == "self_training"]
        raise ClipAdaptError(f"`clipadapt adapt` runs a label-free method ({', '.join(label_free)}); the config "
                             f"names method '{cfg.method.name}'. Remove method.name or set it to {LABEL_FREE_DEFAULT} "
                             "(use `clipadapt train` for supervised methods).")
    if cfg.train.calibrate != "none":
        raise ClipAdaptError(f"train.calibrate={cfg.train.calibrate}: `clipadapt adapt` is label-free, so it has no "
                             "labelled validation split to fit a temperature on. Remove train.calibrate, or train "
                             "with labels (`clipadapt train`).")
    params = dict(cfg.method.params)
    spec = params.get("descriptions")
    if isinstance(spec, str):
        path = Path(spec).expanduser()
        if not path.is_absolute():
            near_config = (config_dir / path) if config_dir is not None else None
            path = near_config if near_config is not None and near_config.exists() else path.resolve()
        params["descriptions"] = str(path)
    elif spec is None and cfg.data.root is not None:
        default = Path(cfg.data.root).expanduser() / "descriptions.json"
        if default.is_file() or cfg.data.format == "synthetic-finegrained":  # rendered there on first use
            params["descriptions"] = str(default)
    data_update = {} if "val_fraction" in cfg.data.model_fields_set else {"val_fraction": 0.0}
    unset = {k: v for k, v in method_cls.train_defaults.items() if k not in cfg.train.model_fields_set}
    return cfg.model_copy(update={
        "method": cfg.method.model_copy(update={"name": name, "params": params}),
        "train": cfg.train.model_copy(update=unset),
        "data": cfg.data.model_copy(update=data_update),
    })


def _scores(labels: np.ndarray, preds: np.ndarray, task) -> dict:
    from clipadapt.metrics.classification import attribute_metrics

    mean = attribute_metrics(labels, preds.reshape(-1, 1), task)["mean"]
    return {key: mean[key] for key in SUMMARY}


def _build_method(cfg: RunConfig, task, backbone):
    """The label-free method on the run's backbone, with its class descriptions inlined (the card then
    rebuilds the heads without the file); returns the method and the descriptions file."""
    params = dict(cfg.method.params)
    source_file = params.get("descriptions") if isinstance(params.get("descriptions"), str) else None
    if source_file is not None:
        params["descriptions"] = resolve_descriptions(source_file, list(task.attributes[0].classes))
    # a backbone passed in takes this run's preprocessing
    backbone = open_backbone(cfg.backbone) if backbone is None else apply_preprocessing(backbone, cfg.backbone)
    return build_method(cfg.method.name, backbone, task, params), source_file


def _score_heads_before_training(trainer: SelfTrainer, test: LabelledImages) -> dict[str, dict]:
    """The comparison rows of the frozen heads and of the method before adaptation, on test
    (which heads make rows, under what names: the method's plan says)."""
    before = trainer.plan.rows_before_training(trainer.head_predictions(test))
    return {name: _scores(test.labels, preds, test.task) for name, preds in before.items()}


def adapt_run(cfg: RunConfig, out: Path, progress: bool = True, backbone=None,
              config_dir: Path | None = None, true_labels: bool = False) -> AdaptOutcome:
    """Label-free adaptation run (SPEC 3): render/read the data, build microCLIP, score the
    zero-shot heads on test, self-train on the UNLABELLED train images, evaluate on test with
    the fused output (centre crop), and write the run folder: config.yaml, card.json,
    checkpoint.safetensors, history.json (per-epoch pseudo-label statistics), metrics.json
    (microCLIP's metrics + "comparison"), predictions.csv, confusion matrices, curves.png.
    `clipadapt eval` / `predict` work on the folder like on a `train` run.

    true_labels=True runs the diagnostic upper bound instead (`SelfTrainer.fit`,
    targets="true"): the training labels replace the pseudo-labels, and the card records
    train_labels_used: true."""

    cfg = prepare_adapt_config(cfg, config_dir)
    folder = RunFolder(out)
    with folder.failure_recorded():  # a failed run leaves no folder, or one with FAILED.txt
        return _adapt(cfg, folder, progress, backbone, true_labels)


def _adapt(cfg: RunConfig, folder: RunFolder, progress: bool, backbone, true_labels: bool) -> AdaptOutcome:
    """The steps of `adapt_run` inside its run folder."""
    out = folder.path
    folder.write_config(cfg)
    seed_everything(cfg.train.seed)
    splits = build_splits(cfg.data)
    if cfg.data.on_bad_image == "skip":  # like `train`: the images left out, with their reasons
        folder.record_skipped(splits.skipped)
    task = splits.task
    if task.multilabel or len(task) != 1:
        raise ClipAdaptError("`clipadapt adapt` classifies one single-label attribute; the data has "
                             f"{len(task)} attribute(s){' (multi-label)' if task.multilabel else ''}.")
    hidden = splits.train.labels.copy()  # only for scoring the pseudo-labels
    unlabelled = LabelledImages(list(splits.train.paths), np.full_like(hidden, MISSING), task, splits.train.sources)
    method, source_file = _build_method(cfg, task, backbone)
    # classes its heads cannot tell apart (stops a run that trains), or words they never learned
    notes = check_class_texts(method, stop=cfg.train.epochs > 0, name_unknown=True)
    for note in notes:  # said before self-training, not after it
        warnings.warn(note, ClassTextWarning, stacklevel=2)
    trainer = SelfTrainer(method, cfg, progress=progress)

    test = splits.test if splits.test is not None and len(splits.test) else None
    # zero-shot first: self-training changes microCLIP's own LayerNorm copies and its head
    comparison = _score_heads_before_training(trainer, test) if test is not None else {}
    fit = trainer.fit(unlabelled, hidden_labels=hidden, targets="true" if true_labels else "pseudo")
    folder.write_history(fit.history)
    reasons = no_progress_reasons(fit.history, len(fit.history))
    if reasons:
        notes.append(no_progress_message(method, reasons))
        warnings.warn(notes[-1], NoProgressWarning, stacklevel=2)

    metrics = None
    if test is not None:
        metrics, probs = Runner(method, cfg, progress=progress).evaluate(test, description="test")
    # label-free: no validation split, so "at chance" is read on test
    score, split = selected_balanced_accuracy(fit.history, len(fit.history), lambda: None, metrics)
    at_chance, note = chance_check(method, score, split, reasons, trained=bool(fit.history))
    if note:
        notes.append(note)
        warnings.warn(note, AtChanceWarning, stacklevel=2)
    flags = {"no_progress": bool(reasons), "at_chance": at_chance, **({"warnings": notes} if notes else {})}
    if metrics is not None:
        comparison[method.name] = {key: metrics["mean"][key] for key in SUMMARY}
        metrics["comparison"] = comparison
        metrics.update(flags)
        folder.write_evaluation(metrics, probs, test, method.thresholds())
    card = build_card(
        method, seed=cfg.train.seed, config=cfg.model_dump(mode="json"),
        cpu_threads=current_threads(),  # the count its numbers were computed at (clipadapt/threads.py)
        data={"format": cfg.data.format, "train": len(splits.train), "val": 0, "test": len(test) if test else 0,
              "train_labels_used": bool(true_labels)},
        selection={"monitor": "none (the last epoch is kept)" if true_labels else
                   "none (label-free: the last epoch is kept)", "best_epoch": len(fit.history),
                   "best_score": None, "stopped_early": False, "epochs_run": len(fit.history)},
        metrics=metrics["mean"] if metrics else None,
        comparison=comparison or None,
        heads={**method.describe_heads(), "descriptions_file": source_file},
        self_training={"recipe": {k: getattr(cfg.train, k) for k in method.train_defaults},
                       "last_epoch": fit.history[-1] if fit.history else None},
        **flags,
    )
    folder.finish(method, card, fit.history, curve_keys=("train_loss", "train_ce", "pseudo_label_accuracy",
                                                        "pseudo_label_entropy_normalised"))
    rows = dict(trainer.plan.comparison_rows)
    if true_labels:  # its own row learned from the true labels: the upper bound, not label-free
        rows[method.name] = trainer.plan.upper_bound_row
    return AdaptOutcome(out, metrics, comparison, fit.history, card, rows)
