"""Supervised training and evaluation of a method: batch sources, the supervised step
(run by the shared loop in `engine.loop`), validation and selection, resumable state,
and prediction.

The loop owns devices, precision, schedule, logging and checkpoints; the method owns
its math (Lightning's split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from clipadapt.backbone import ImageFeatures
from clipadapt.config import RunConfig
from clipadapt.data.dataset import DataSplits, LabelledImages
from clipadapt.engine import distributed
from clipadapt.bars import progress_bar
from clipadapt.engine.checkpoint import load_state_strict
from clipadapt.engine.devices import autocast_for, resolve_device, seed_everything
from clipadapt.engine.loop import BestCheckpoint, EpochTotals, Selection, run_epoch, train_epochs
from clipadapt.engine.losses import AttributeLoss, resolve_loss
from clipadapt.engine.optim import build_optimizer, load_optimizer_state, optimizer_state
from clipadapt.engine.run_state import RunState
from clipadapt.engine.schedule import set_epoch_lr
from clipadapt.engine.sources import FeatureBatches, ImageBatches, make_transform
from clipadapt.features.encoding import view_batches
from clipadapt.methods import FeatureNeeds, Method
from clipadapt.metrics.calibration import add_calibration, negative_log_likelihood
from clipadapt.metrics.classification import attribute_metrics
from clipadapt.metrics.multilabel import par_metrics
from clipadapt.metrics.table import resolve_monitor, selection_score
from clipadapt.run_files import RunFiles
from clipadapt.threads import continue_at, current_threads, share_cores


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
        share_cores(cfg.train.threads)  # a fair share of the CPU's cores, read once (threads.py)
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
        return autocast_for(self.device)

    # --------------------------------------------------------------- prediction
    def predict_proba(self, images: LabelledImages, description: str = "predict", show: bool = True) -> list[np.ndarray]:
        """Class probabilities per attribute, [N, K_a] each, in row order (`show`: a
        progress bar, off inside the training bar, where rich cannot nest a second one)."""
        return [torch.softmax(torch.from_numpy(z), dim=-1).numpy() for z in self.predict_logits(images, description, show)]

    @torch.no_grad()
    def predict_logits(self, images: LabelledImages, description: str = "predict", show: bool = True) -> list[np.ndarray]:
        """The method's calibrated logits per attribute (float32), [N, K_a] each."""
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
        task decides each attribute at the method's thresholds (train.threshold until
        train.thresholds chooses them) and adds the field's scores
        (metrics["multilabel"]; mA and instance scores also in metrics["mean"])."""
        logits = self.predict_logits(images, description, show)
        probs = [torch.softmax(torch.from_numpy(z), dim=-1).numpy() for z in logits]
        task = self.method.task
        if task.multilabel:
            yes = np.stack([p[:, 1] for p in probs], axis=1)
            threshold = np.asarray(self.method.thresholds())
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
        # ECE, NLL, reliability bins (and before / after for a calibrated run)
        add_calibration(metrics, images.labels, logits, task, self.method.temperatures(), self.method.biases())
        return metrics, probs

    @staticmethod
    def _loss_of(probs: list[np.ndarray], labels: np.ndarray) -> float:
        """The summed cross-entropy of the attributes that have labelled rows."""
        nlls = (negative_log_likelihood(p, labels[:, a]) for a, p in enumerate(probs))
        return float(sum(nll for nll in nlls if nll is not None))

    # --------------------------------------------------------------- training
    def fit(self, splits: DataSplits, run_dir: Path | RunState, resume: bool = False, notify=None) -> FitResult:
        """Train on splits.train, select on splits.val; the best state is written to the
        run folder's checkpoint and kept loaded in the method at the end. `run_dir`: the
        folder's writer (the workflow's `RunFolder`) or a path. `notify` (a callable taking
        one line) is told where a resumed run starts."""
        cfg, method = self.cfg.train, self.method
        files = run_dir if isinstance(run_dir, RunState) else RunState(run_dir, write=self.dist.is_main)
        if self.cfg.data.on_bad_image == "skip" and self.dist.is_main:
            files.record_skipped(splits.skipped)
        method.fit_statistics(torch.as_tensor(splits.train.labels))
        if method.fits_features:  # Tip-Adapter's cache: the training set's embeddings, before any step
            with distributed.main_first(self.dist):
                embeddings = self.embeddings(splits.train, views=method.feature_views())
            method.fit_features(embeddings, torch.as_tensor(splits.train.labels))
        if not method.trains or cfg.epochs == 0:
            if self.dist.is_main:
                self._select_on_validation(splits)
            return FitResult()
        seed_everything(cfg.seed)
        optimizer = build_optimizer(method, cfg)
        result, start, selection = FitResult(), 0, Selection(cfg.patience)
        if resume and files.has_resume():
            start, result, patience_left = self._load_resume(files, optimizer)
            selection.restore(result.history, result.best_epoch, result.best_score, patience_left)
            if notify is not None and self.dist.is_main:
                notify(resume_announcement(start, cfg.epochs, files.file(RunFiles.RESUME_STATE)))
        has_val = splits.val is not None and len(splits.val) > 0
        with distributed.main_first(self.dist):  # one process fills the store, the others read it
            train_src = self.source(splits.train, train=True)
            if has_val:
                self.source(splits.val, train=False)  # fill the store before the progress bar starts
        self._training_pass = distributed.wrap_training(self.training_logits, method, self.device, self.dist)
        best = BestCheckpoint(files, method)
        plan = SupervisedFit(self, splits, train_src, optimizer, selection, best, result)
        train_epochs(plan, optimizer, [p for p in method.parameters() if p.requires_grad],
                     epochs=range(start, cfg.epochs), total=cfg.epochs, grad_clip=cfg.grad_clip,
                     progress=self.progress)
        if self.dist.is_main:  # the other ranks of a torchrun job stop here; rank 0 tests and writes
            best.restore(self.device)
            self._select_on_validation(splits)
        return result

    def _select_on_validation(self, splits: DataSplits) -> None:
        """A method built from features (`fits_features`) settles what it chooses on the
        validation split's embeddings (Tip-Adapter's alpha and beta); None without one."""
        if not self.method.fits_features:
            return
        if splits.val is None or not len(splits.val):
            self.method.select_on_validation(None, None)
            return
        self.method.select_on_validation(self.embeddings(splits.val), torch.as_tensor(splits.val.labels))

    @torch.no_grad()
    def embeddings(self, images: LabelledImages, views: int = 1) -> torch.Tensor:
        """The frozen image embeddings [N, E] of a list (float32, raw), each the mean over
        `views` views: the test view when 1, else that many seeded augmented train views as
        the feature store keeps them (read from it; encoded here when features.cache=off)."""
        backbone, rows = self.method.backbone, np.arange(len(images))
        if self.cfg.features.cache != "off":
            store = FeatureBatches(backbone, FeatureNeeds(), images, self.cfg.features, views=views, device=self.device,
                                   num_workers=self.cfg.train.num_workers, progress=self.progress).store
            total = sum(store.read(rows, v)[1] for v in range(views))
        else:
            total = torch.zeros(len(images), backbone.embed_dim)
            for v in range(views):
                for pixels, items in view_batches(backbone, images.paths, images.sources, rows, v, views,
                                                  self.cfg.features.batch_size, self.cfg.train.num_workers):
                    total[items] += backbone.forward_features(pixels.to(self.device), None).embedding.float().cpu()
        return (total / views).to(self.device)

    def train_one_epoch(self, source, labels: torch.Tensor, criterion: AttributeLoss, optimizer, epoch: int) -> float:
        """One supervised epoch outside `fit` (the benchmarks time it); its mean loss."""
        plan = SupervisedSteps(self, source, labels, criterion)
        trainable = [p for p in self.method.parameters() if p.requires_grad]
        return run_epoch(plan, optimizer, trainable, self.cfg.train.grad_clip, epoch).mean()

    # --------------------------------------------------------------- resume
    def _save_resume(self, files: RunState, optimizer, epoch: int, result: FitResult, patience_left) -> None:
        tensors, meta = optimizer_state(optimizer)
        state = {f"model.{k}": v for k, v in self.method.trained_state().items()}
        state.update({f"optim.{k}": v for k, v in tensors.items()})
        info = {"epoch": epoch, "best_epoch": result.best_epoch, "best_score": result.best_score,
                "patience_left": patience_left, "history": result.history, "optimizer": meta,
                "threads": current_threads()}  # resumed at the same count, the run repeats bit for bit
        files.save_resume(state, info)

    def _load_resume(self, files: RunState, optimizer) -> tuple[int, FitResult, int | None]:
        state, info = files.read_resume(device=self.device)
        continue_at(info.get("threads"))
        model = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        load_state_strict(self.method, model, source=str(files.file(RunFiles.RESUME_STATE)))
        load_optimizer_state(optimizer, {k[len("optim."):]: v for k, v in state.items() if k.startswith("optim.")},
                             info["optimizer"])
        result = FitResult(info["history"], info["best_epoch"], info["best_score"])
        return info["epoch"], result, info["patience_left"]


def resume_announcement(done: int, total: int, state: Path) -> str:
    """The one line a resumed run starts with: which epoch comes next, and from which file."""
    if done >= total:  # stopped while writing the finished run: only the last steps remain
        return f"resuming after the last epoch ({done} of {total} done; {state}): evaluating and writing the run"
    return f"resuming from epoch {done + 1} of {total} ({done} done; {state})"


class SupervisedSteps:
    """The supervised step for `engine.loop`: labelled batches in a seeded order and the
    method's (weighted) loss. `SupervisedFit` adds what `Runner.fit` does after an epoch."""

    steps_per_epoch = None  # the bar moves once per epoch

    def __init__(self, runner: Runner, source, labels: torch.Tensor, criterion: AttributeLoss):
        self.runner, self.source, self.labels, self.criterion = runner, source, labels, criterion

    def start_epoch(self, epoch: int):
        runner, cfg = self.runner, self.runner.cfg.train
        runner.method.train()
        runner.method.backbone.eval()  # frozen backbone: no dropout / BN updates inside it
        # Order and dropout depend on (seed, epoch) only, so a resumed run repeats an uninterrupted one.
        torch.manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(len(self.labels)).numpy()
        if runner.dist.active:  # the same permutation, each rank taking every WORLD_SIZE-th row of it
            order = distributed.epoch_rows(len(self.labels), cfg.seed * 1000, epoch, runner.dist)
        return self.source.batches(order, distributed.local_batch_size(cfg.batch_size, runner.dist), epoch)

    def set_lr(self, optimizer, epoch: int, step: int) -> float:
        return set_epoch_lr(optimizer, epoch, self.runner.cfg.train)

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        batch, idx = batch
        target = self.labels[idx].to(self.runner.device)
        with self.runner.autocast():
            logits, extra = self.runner._training_pass(batch)
        loss = self.criterion(logits, target)
        for weight, aux in extra:  # auxiliary branches (PromptPAR's region aggregation)
            loss = loss + weight * self.criterion(aux, target)
        return loss, {}

    def end_epoch(self, totals: EpochTotals) -> tuple[bool, str]:
        return False, f"loss {totals.mean():.3f}"


class SupervisedFit(SupervisedSteps):
    """`Runner.fit`'s epochs: after each, validation, selection, the best state and the
    resume state."""

    def __init__(self, runner: Runner, splits: DataSplits, source, optimizer, selection: Selection,
                 best: BestCheckpoint, result: FitResult):
        cfg = runner.cfg.train
        counts = [splits.train.class_counts(a) for a in range(len(runner.method.task))]
        criterion = AttributeLoss(resolve_loss(cfg.loss, runner.method.task.multilabel), counts,
                                  gamma=cfg.focal_gamma, cb_beta=cfg.cb_beta)
        super().__init__(runner, source, torch.as_tensor(splits.train.labels), criterion)
        self.splits, self.optimizer = splits, optimizer
        self.selection, self.best, self.result = selection, best, result
        self.monitor = resolve_monitor(cfg.monitor, runner.method.task.multilabel)
        self.has_val = splits.val is not None and len(splits.val) > 0

    def end_epoch(self, totals: EpochTotals) -> tuple[bool, str]:
        runner, epoch = self.runner, totals.epoch
        train_loss = distributed.mean_over_ranks(totals.mean(), runner.dist)
        row = {"epoch": epoch + 1, "lr": totals.lr, "train_loss": train_loss}
        if self.has_val:
            val_metrics, _ = runner.evaluate(self.splits.val, description="validate", show=False)
            row.update({f"val_{k}": v for k, v in val_metrics["mean"].items()})
            row["val_loss"] = val_metrics["loss"]
            score = selection_score(val_metrics, self.monitor)
        else:
            score = float(epoch)  # no validation: the last epoch is the selected one
        # every rank stops and selects alike
        score, val_loss = distributed.from_main((score, row.get("val_loss", float("inf"))), runner.dist)
        self.result.history.append(row)
        if self.selection.update(epoch + 1, score, val_loss):
            self.best.save()
        self.result.best_epoch, self.result.best_score = self.selection.best_epoch, self.selection.best_score
        if runner.dist.is_main:
            runner._save_resume(self.best.files, self.optimizer, epoch + 1, self.result,
                                self.selection.patience_left)
        info = f"loss {train_loss:.3f}" + (f" val {self.monitor} {row.get('val_' + self.monitor) or 0:.3f}"
                                           if self.has_val else "")
        stop = self.has_val and self.selection.exhausted
        self.result.stopped_early = stop
        return stop, info
