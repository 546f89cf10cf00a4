"""The training loop: epochs over a batch source, warm-up + cosine, early stopping on
validation, resumable state, and prediction.

The loop owns devices, precision, schedule, logging and checkpoints; the method owns
its math (Lightning's split).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from clipadapt.backbone import ImageFeatures
from clipadapt.config import RunConfig
from clipadapt.data.dataset import DataSplits, LabelledImages
from clipadapt.data.bad_images import record_skipped
from clipadapt.engine import distributed
from clipadapt.engine.checkpoint import load_state_strict, read_state, save_state
from clipadapt.engine.losses import AttributeLoss, resolve_loss
from clipadapt.engine.optim import build_optimizer, load_optimizer_state, optimizer_state
from clipadapt.engine.schedule import set_epoch_lr
from clipadapt.engine.sources import FeatureBatches, ImageBatches, make_transform
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import Method
from clipadapt.metrics.calibration import add_calibration
from clipadapt.metrics.classification import attribute_metrics
from clipadapt.metrics.multilabel import par_metrics

RESUME_STATE = "resume.safetensors"  # tensors + the loop's position in its metadata: one atomic file
RESUME_INFO = "resume.json"  # written by earlier versions; still removed when a run completes
BEST_STATE = "checkpoint.safetensors"
# A validation loss "improves" when it falls below its lowest value so far by more than this
# fraction (float noise on a flat loss must not keep a run going).
LOSS_MIN_DELTA = 1e-4


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as given (validated)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ClipAdaptError(f"train.device={name} but no CUDA device is available here. Use train.device=auto or cpu.")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_monitor(monitor: str, multilabel: bool) -> str:
    """The validation score that "auto" stands for: mA for multi-label tasks, macro-F1 otherwise."""
    if monitor == "auto":
        return "mA" if multilabel else "macro_f1"
    if monitor in ("mA", "instance_f1") and not multilabel:
        raise ClipAdaptError(f"train.monitor={monitor} is a multi-label score; this task is single-label. "
                             "Use macro_f1, accuracy, weighted_f1, balanced_accuracy or loss.")
    return monitor


def progress_bar(enabled: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        disable=not enabled, transient=False,
    )


@dataclass
class FitResult:
    """What training produced: per-epoch history and the selected epoch."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float | None = None
    stopped_early: bool = False


class Runner:
    """Serves batches to a method and runs it: training, validation, prediction."""

    def __init__(self, method: Method, cfg: RunConfig, progress: bool = True):
        self.method = method
        self.cfg = cfg
        device = resolve_device(cfg.train.device)
        self.dist = distributed.context(device)  # one process of a torchrun job, or the only one
        self.device = distributed.rank_device(device, self.dist)
        self.progress = progress and self.dist.is_main
        self._training_pass = self.training_logits  # wrapped in DDP by fit() under torchrun
        self.method.to(self.device)
        self._sources: dict[tuple, object] = {}

    # --------------------------------------------------------------- data
    def uses_store(self, train: bool) -> bool:
        needs = self.method.needs()
        if self.cfg.features.cache == "off" or not needs.frozen_image_path:
            return False
        return not (train and self.cfg.train.end_to_end)

    def source(self, images: LabelledImages, train: bool):
        """The batch source of an image list (cached per list and mode)."""
        key = (id(images), train)
        if key not in self._sources:
            if self.uses_store(train):
                views = self.cfg.features.train_views if train else 1
                self._sources[key] = FeatureBatches(
                    self.method.backbone, self.method.needs(), images, self.cfg.features, views=views,
                    device=self.device, num_workers=self.cfg.train.num_workers, progress=self.progress)
            else:
                transform = make_transform(self.method.backbone, train=train)
                self._sources[key] = ImageBatches(images, transform, num_workers=self.cfg.train.num_workers)
        return self._sources[key]

    def logits(self, batch) -> list[torch.Tensor]:
        if isinstance(batch, ImageFeatures):
            return self.method(batch.to(self.device))
        images = batch.to(self.device, non_blocking=True)
        if self.method.needs().frozen_image_path:
            with torch.no_grad():
                feats = self.method.backbone.forward_features(images, self.method.needs().tap_block)
            return self.method(feats)
        return self.method.forward_images(images)

    def training_logits(self, batch) -> tuple[list[torch.Tensor], list]:
        """Logits of a training batch and the method's auxiliary (weight, logits) outputs."""
        if isinstance(batch, ImageFeatures) or self.method.needs().frozen_image_path:
            return self.logits(batch), []
        return self.method.training_forward_images(batch.to(self.device, non_blocking=True))

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    # --------------------------------------------------------------- prediction
    def predict_proba(self, images: LabelledImages, description: str = "predict", show: bool = True) -> list[np.ndarray]:
        """Class probabilities per attribute, [N, K_a] each, in row order (`show`: a
        progress bar, off inside the training bar, where rich cannot nest a second one)."""
        return [torch.softmax(torch.from_numpy(z), dim=-1).numpy() for z in self.predict_logits(images, description, show)]

    @torch.no_grad()
    def predict_logits(self, images: LabelledImages, description: str = "predict", show: bool = True) -> list[np.ndarray]:
        """The method's logits per attribute (float32, divided by its temperatures), [N, K_a] each."""
        self.method.eval()
        src = self.source(images, train=False)
        order = np.arange(len(images))
        out: list[list[np.ndarray]] = [[] for _ in self.method.task.attributes]
        bs = self.cfg.train.eval_batch_size
        with progress_bar(self.progress and show) as bar:
            task = bar.add_task(description, total=len(images), info="")
            for batch, idx in src.batches(order, bs):
                with self.autocast():
                    logits = self.logits(batch)
                for a, lg in enumerate(logits):
                    out[a].append(lg.float().cpu().numpy())
                bar.advance(task, len(idx))
        return [np.concatenate(parts) if parts else np.zeros((0, a.num_classes))
                for parts, a in zip(out, self.method.task.attributes)]

    def evaluate(self, images: LabelledImages, description: str = "evaluate",
                 show: bool = True) -> tuple[dict, list[np.ndarray]]:
        """Metrics of the method on a labelled list, and the probabilities. A multi-label
        task decides each attribute with train.threshold and adds the field's scores
        (metrics["multilabel"]; mA and instance scores also in metrics["mean"])."""
        logits = self.predict_logits(images, description, show)
        probs = [torch.softmax(torch.from_numpy(z), dim=-1).numpy() for z in logits]
        task = self.method.task
        if task.multilabel:
            yes = np.stack([p[:, 1] for p in probs], axis=1)
            threshold = self.cfg.train.threshold
            metrics = attribute_metrics(images.labels, (yes > threshold).astype(np.int64), task)
            scores = par_metrics(images.labels, yes, threshold, task.names)
            metrics["multilabel"] = scores
            metrics["mean"].update({
                "mA": scores["mA"], "instance_accuracy": scores["accuracy"], "instance_precision": scores["precision"],
                "instance_recall": scores["recall"], "instance_f1": scores["f1_mean_of_samples"],
                "instance_f1_of_means": scores["f1_of_means"],
            })
        else:
            preds = np.stack([p.argmax(1) for p in probs], axis=1)
            metrics = attribute_metrics(images.labels, preds, task)
        metrics["loss"] = float(self._loss_of(probs, images.labels))
        add_calibration(metrics, images.labels, logits, task, self.method.temperatures())  # ECE, NLL, reliability bins
        return metrics, probs

    @staticmethod
    def _loss_of(probs: list[np.ndarray], labels: np.ndarray) -> float:
        total = 0.0
        for a, p in enumerate(probs):
            keep = labels[:, a] >= 0
            if keep.any():
                total += float(-np.log(np.clip(p[keep, labels[keep, a]], 1e-12, None)).mean())
        return total

    # --------------------------------------------------------------- training
    def fit(self, splits: DataSplits, run_dir: Path, resume: bool = False) -> FitResult:
        """Train on splits.train, select on splits.val; the best state is written to
        run_dir/checkpoint.safetensors and kept loaded in the method at the end."""
        cfg, method = self.cfg.train, self.method
        run_dir = Path(run_dir)
        if self.cfg.data.on_bad_image == "skip" and self.dist.is_main:
            record_skipped(run_dir, splits.skipped)
        method.fit_statistics(torch.as_tensor(splits.train.labels))
        if not method.trains or cfg.epochs == 0:
            return FitResult()
        seed_everything(cfg.seed)
        counts = [splits.train.class_counts(a) for a in range(len(method.task))]
        criterion = AttributeLoss(resolve_loss(cfg.loss, method.task.multilabel), counts, gamma=cfg.focal_gamma,
                                  cb_beta=cfg.cb_beta)
        monitor = resolve_monitor(cfg.monitor, method.task.multilabel)
        optimizer = build_optimizer(method, cfg)
        result, start = FitResult(), 0
        patience_left = cfg.patience
        if resume and (run_dir / RESUME_STATE).is_file():
            start, result, patience_left = self._load_resume(run_dir, optimizer)
        losses = [row["val_loss"] for row in result.history if row.get("val_loss") is not None]
        lowest_loss = min(losses, default=float("inf"))
        chosen = result.history[result.best_epoch - 1] if 1 <= result.best_epoch <= len(result.history) else {}
        chosen_loss = chosen.get("val_loss", float("inf"))
        labels = torch.as_tensor(splits.train.labels)
        has_val = splits.val is not None and len(splits.val) > 0
        with distributed.main_first(self.dist):  # one process fills the store, the others read it
            train_src = self.source(splits.train, train=True)
            if has_val:
                self.source(splits.val, train=False)  # fill the store before the progress bar starts
        self._training_pass = distributed.wrap_training(self.training_logits, method, self.device, self.dist)
        with progress_bar(self.progress) as bar:
            task = bar.add_task("train", total=cfg.epochs, completed=start, info="")
            for epoch in range(start, cfg.epochs):
                lr = set_epoch_lr(optimizer, epoch, cfg)
                train_loss = distributed.mean_over_ranks(self._train_epoch(train_src, labels, criterion, optimizer, epoch),
                                                         self.dist)
                row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss}
                if has_val:
                    val_metrics, _ = self.evaluate(splits.val, description="validate", show=False)
                    row.update({f"val_{k}": v for k, v in val_metrics["mean"].items()})
                    row["val_loss"] = val_metrics["loss"]
                    score = -val_metrics["loss"] if monitor == "loss" else val_metrics["mean"].get(monitor)
                    score = float("-inf") if score is None else score  # undefined (e.g. one class): worst
                else:
                    score = float(epoch)  # no validation: the last epoch is the selected one
                val_loss = row.get("val_loss", float("inf"))
                # every rank stops and selects alike
                score, val_loss = distributed.from_main((score, val_loss), self.dist)
                result.history.append(row)
                # Selection: the best monitored score; a tie (a flat macro-F1 on small data) goes
                # to the lower validation loss. Patience: an epoch counts against it only when
                # neither the score nor the validation loss improved, so a run whose loss still
                # falls while its score is flat is not stopped.
                loss_improved = val_loss < lowest_loss * (1 - LOSS_MIN_DELTA)
                lowest_loss = min(lowest_loss, val_loss)
                if (result.best_score is None or score > result.best_score
                        or (score == result.best_score and val_loss < chosen_loss)):
                    result.best_score, result.best_epoch, chosen_loss = score, epoch + 1, val_loss
                    if self.dist.is_main:
                        save_state(run_dir / BEST_STATE, method.trained_state())
                    patience_left = cfg.patience
                elif loss_improved:
                    patience_left = cfg.patience
                elif patience_left is not None:
                    patience_left -= 1
                if self.dist.is_main:
                    self._save_resume(run_dir, optimizer, epoch + 1, result, patience_left)
                info = f"loss {train_loss:.3f}" + (f" val {monitor} {row.get('val_' + monitor) or 0:.3f}" if has_val else "")
                bar.update(task, advance=1, info=info)
                if patience_left is not None and patience_left <= 0 and has_val:
                    result.stopped_early = True
                    break
        if self.dist.is_main:  # the other ranks of a torchrun job stop here; rank 0 tests and writes
            # the best epoch's trained tensors, strictly: a missing or foreign key is an error, not a silent skip
            load_state_strict(method, read_state(run_dir / BEST_STATE, device=str(self.device))[0],
                              source=str(run_dir / BEST_STATE))
        return result

    def _train_epoch(self, source, labels: torch.Tensor, criterion, optimizer, epoch: int) -> float:
        method, cfg = self.method, self.cfg.train
        method.train()
        method.backbone.eval()  # frozen backbone: no dropout / BN updates inside it
        # Order and dropout depend on (seed, epoch) only, so a resumed run repeats an uninterrupted one.
        torch.manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(len(labels)).numpy()
        batch_size = distributed.local_batch_size(cfg.batch_size, self.dist)
        if self.dist.active:  # the same permutation, each rank taking every WORLD_SIZE-th row of it
            order = distributed.epoch_rows(len(labels), cfg.seed * 1000, epoch, self.dist)
        total, batches = 0.0, 0
        for batch, idx in source.batches(order, batch_size, epoch):
            target = labels[idx].to(self.device)
            with self.autocast():
                logits, extra = self._training_pass(batch)
            loss = criterion(logits, target)
            for weight, aux in extra:  # auxiliary branches (PromptPAR's region aggregation)
                loss = loss + weight * criterion(aux, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for p in method.parameters() if p.requires_grad], cfg.grad_clip)
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        return total / max(batches, 1)

    # --------------------------------------------------------------- resume
    def _save_resume(self, run_dir: Path, optimizer, epoch: int, result: FitResult, patience_left) -> None:
        tensors, meta = optimizer_state(optimizer)
        state = {f"model.{k}": v for k, v in self.method.trained_state().items()}
        state.update({f"optim.{k}": v for k, v in tensors.items()})
        info = {"epoch": epoch, "best_epoch": result.best_epoch, "best_score": result.best_score,
                "patience_left": patience_left, "history": result.history, "optimizer": meta}
        # One file: a crash between writing the tensors and a separate JSON would resume epoch
        # e's weights with epoch e-1's position and silently train an epoch twice.
        save_state(run_dir / RESUME_STATE, state, metadata={"resume": json.dumps(info)})

    def _load_resume(self, run_dir: Path, optimizer) -> tuple[int, FitResult, int | None]:
        state, metadata = read_state(run_dir / RESUME_STATE, device=str(self.device))
        if "resume" not in metadata:
            raise ClipAdaptError(f"{run_dir / RESUME_STATE} holds no resume position (written by an older clipadapt). "
                                 "Delete it to train this run from the start.")
        info = json.loads(metadata["resume"])
        model = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        from clipadapt.engine.checkpoint import load_state_strict

        load_state_strict(self.method, model, source=str(run_dir / RESUME_STATE))
        load_optimizer_state(optimizer, {k[len("optim."):]: v for k, v in state.items() if k.startswith("optim.")},
                             info["optimizer"])
        result = FitResult(info["history"], info["best_epoch"], info["best_score"])
        return info["epoch"], result, info["patience_left"]
