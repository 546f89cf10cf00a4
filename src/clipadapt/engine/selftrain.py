"""Label-free self-training (microCLIP, SPEC 3): pseudo-labels from two heads, no labels.

Per batch of unlabelled images:
  views      a weak view (Resize + RandomCrop), a strong view (RandomResizedCrop (0.3, 1) +
             flip + RandAugment) and `crops` random squares of side U(0.5, 0.9) x min(H, W),
             each through the weak transform;
  prior      r_i = <c(crop_i), c(weak)>, composite = normalise(sum_i softmax(r)_i c(crop_i)),
             s_static = composite W_LLM^T (frozen LLM head);
  dynamic    s_dyn = z(weak) W*^T (the current model's fused feature, learnable head);
  label      y_hat = argmax(gamma s_static + (1 - gamma) s_dyn), all of it without gradient;
  loss       CE(100 (0.5 c + 0.5 f_hat) W*^T on the strong view, y_hat)
             + fairness_weight * (-2 mean_k log p_bar_k), p_bar the running class marginal.
Recipe: AdamW lr 1e-4, wd 0.1 (none on LayerNorms / identity projections), cosine per
iteration to 2e-6, no warm-up, 15 epochs, batch 64, gradient clipping 1.0, seed 0.

Labels of the training images are never used for learning: the trainer is handed
unlabelled images; hidden labels, when a caller passes them, only score the pseudo-labels
in the per-epoch statistics.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms as T

from clipadapt.config import RunConfig, TrainConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.data.images import load_image
from clipadapt.data.transforms import BICUBIC
from clipadapt.engine.optim import build_optimizer
from clipadapt.engine.loop import EpochTotals, train_epochs
from clipadapt.engine.schedule import lr_at_epoch, set_lr
from clipadapt.engine.sources import ImageBatches, make_transform
from clipadapt.bars import progress_bar
from clipadapt.engine.devices import autocast_for, resolve_device
from clipadapt.threads import share_cores
from clipadapt.errors import ClipAdaptError
from clipadapt.task import MISSING

FAIRNESS_SCALE = 2.0  # L_fair = -2 mean_k log p_bar_k (SPEC 3, MUST's fairness term)

# The authors' recipe (SPEC 3): used for every train.* key a config does not set.
MICROCLIP_RECIPE: dict = {
    "optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.1, "min_lr": 2e-6, "warmup_epochs": 0, "epochs": 15,
    "batch_size": 64, "grad_clip": 1.0, "seed": 0,
}


# ----------------------------------------------------------------------------- the math
def update_log_marginal(previous: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """log p_bar_t for p_bar_t = 0.5 (p_bar_{t-1}.detach() + mean_b softmax(logits)_b) [K].

    The first batch (previous None) gives its own mean. Computed in log space (logsumexp /
    logaddexp) so that a class the batch all but ignores gets log p_bar ~ -100, not -inf,
    and its gradient survives.
    """
    if logits.dim() != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits must be [B, K] with B >= 1, got shape {tuple(logits.shape)}")
    log_batch = torch.logsumexp(F.log_softmax(logits.float(), dim=-1), dim=0) - math.log(logits.shape[0])
    if previous is None:
        return log_batch
    return torch.logaddexp(previous.detach().to(log_batch), log_batch) - math.log(2.0)


def fairness_loss(log_marginal: torch.Tensor) -> torch.Tensor:
    """-2 mean_k log p_bar_k (minimal, 2 log K, when the running marginal is uniform)."""
    return -FAIRNESS_SCALE * log_marginal.mean()


def multiview_composite(crop_embeddings: torch.Tensor, weak_embedding: torch.Tensor) -> torch.Tensor:
    """Crop composite of the multi-view prior: r_i = <crop_i, weak>,
    normalise(sum_i softmax(r)_i crop_i). crop_embeddings [B, M, E], weak_embedding [B, E]
    (both normalised CLS embeddings) -> [B, E]."""
    if crop_embeddings.dim() != 3 or weak_embedding.dim() != 2 or crop_embeddings.shape[0] != weak_embedding.shape[0]:
        raise ValueError(f"crop embeddings [B, M, E] and weak embedding [B, E] expected, got "
                         f"{tuple(crop_embeddings.shape)} and {tuple(weak_embedding.shape)}")
    r = torch.einsum("bme,be->bm", crop_embeddings.float(), weak_embedding.float())
    weights = torch.softmax(r, dim=1)
    return F.normalize(torch.einsum("bm,bme->be", weights, crop_embeddings.float()), dim=-1)


def combine_scores(s_static: torch.Tensor, s_dynamic: torch.Tensor, gamma: float) -> torch.Tensor:
    """Dynamic Knowledge Aggregation: gamma s_static + (1 - gamma) s_dyn; its argmax is y_hat."""
    return gamma * s_static.float() + (1.0 - gamma) * s_dynamic.float()


def class_histogram_entropy(labels: np.ndarray, num_classes: int) -> tuple[float, np.ndarray]:
    """Entropy (nats) of the histogram of `labels` over `num_classes`, and the counts."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    p = counts / max(counts.sum(), 1)
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum()), counts


# ----------------------------------------------------------------------------- the views
@contextlib.contextmanager
def seeded_randomness(seed: int):
    """Seed python's `random`, numpy's global and torch's CPU generator for one block and
    put all three back afterwards (timm's RandAugment draws from `random` and numpy,
    torchvision's transforms from torch): a view depends on its seed alone, whatever the
    worker or the order it is made in."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def weak_transform(image_size: int, mean, std):
    """Resize the short side (bicubic) + RandomCrop to a square + normalise (the weak view)."""
    return T.Compose([T.Resize(image_size, interpolation=BICUBIC), T.RandomCrop(image_size), T.ToTensor(),
                      T.Normalize(mean, std)])


def strong_transform(image_size: int, mean, std, scale=(0.3, 1.0), randaugment: str | None = "rand-m9-mstd0.5"):
    """RandomResizedCrop(scale, bicubic) + horizontal flip + timm RandAugment (`randaugment`
    config string, e.g. "rand-m9-mstd0.5"; None = none) + normalise (the strong view)."""
    steps = [T.RandomResizedCrop(image_size, scale=tuple(scale), interpolation=BICUBIC), T.RandomHorizontalFlip()]
    if randaugment:
        from PIL import Image
        from timm.data.auto_augment import rand_augment_transform

        hparams = {"translate_const": int(image_size * 0.45),
                   "img_mean": tuple(min(255, round(255 * m)) for m in mean), "interpolation": Image.BICUBIC}
        try:
            steps.append(rand_augment_transform(randaugment, hparams))
        except Exception as exc:  # timm's parser raises assorted errors on a bad string
            raise ClipAdaptError(f"method.params.randaugment={randaugment!r} is not a timm RandAugment config "
                                 f"({exc}); use e.g. 'rand-m9-mstd0.5', or null for none.") from None
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


def random_square_crop(image, low: float, high: float):
    """A random square of side U(low, high) x min(H, W) at a uniform position (torch RNG)."""
    w, h = image.size
    frac = low + (high - low) * float(torch.rand(()))
    side = max(1, min(min(w, h), int(round(frac * min(w, h)))))
    left = int(torch.randint(0, w - side + 1, ()))
    top = int(torch.randint(0, h - side + 1, ()))
    return image.crop((left, top, left + side, top + side))


class SelfTrainingViews(Dataset):
    """Items (weak [3, S, S], strong [3, S, S], crops [M, 3, S, S], index) of unlabelled
    images; the randomness of item i in epoch e is seeded by (seed, e, i)."""

    def __init__(self, images: LabelledImages, image_size: int, mean, std, *, crops: int = 8,
                 crop_scale=(0.5, 0.9), strong_scale=(0.3, 1.0), randaugment: str | None = "rand-m9-mstd0.5",
                 seed: int = 0):
        self.images = images
        self.image_size = int(image_size)
        self.weak = weak_transform(image_size, mean, std)
        self.strong = strong_transform(image_size, mean, std, strong_scale, randaugment)
        self.crops = int(crops)
        self.crop_scale = tuple(crop_scale)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images)

    def item_seed(self, index: int) -> int:
        return int(np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)[0])

    def __getitem__(self, index: int):
        where = self.images.sources[index] if self.images.sources else None
        image = load_image(self.images.paths[index], where)
        with seeded_randomness(self.item_seed(index)):
            weak = self.weak(image)
            strong = self.strong(image)
            if self.crops:
                crops = torch.stack([self.weak(random_square_crop(image, *self.crop_scale)) for _ in range(self.crops)])
            else:
                crops = torch.zeros(0, *weak.shape)
        return weak, strong, crops, index


# ----------------------------------------------------------------------------- the trainer
@dataclass
class PseudoLabels:
    """One batch's pseudo-labels and the scores behind them (all without gradient)."""

    labels: torch.Tensor  # [B] y_hat
    static: torch.Tensor  # [B, K] composite W_LLM^T
    dynamic: torch.Tensor  # [B, K] z(weak) W*^T


@dataclass
class SelfTrainResult:
    history: list[dict] = field(default_factory=list)


def microclip_train_defaults(train: TrainConfig) -> TrainConfig:
    """`train` with the microCLIP recipe (MICROCLIP_RECIPE) for every key it does not set."""
    unset = {k: v for k, v in MICROCLIP_RECIPE.items() if k not in train.model_fields_set}
    return train.model_copy(update=unset)


class SelfTrainer:
    """Runs microCLIP's label-free self-training on a device (CPU fp32, CUDA bf16 autocast).

    `method` is a `MicroCLIP`; its params carry gamma, crops, fairness weight and views;
    `cfg.train` carries the optimiser recipe (see `microclip_train_defaults`).
    """

    def __init__(self, method, cfg: RunConfig, progress: bool = True):
        if getattr(method, "name", "") != "microclip":
            raise ClipAdaptError(f"Self-training runs microclip; got method '{getattr(method, 'name', method)}'.")
        self.method = method
        self.cfg = cfg
        share_cores(cfg.train.threads)  # a fair share of the CPU's cores, read once (threads.py)
        self.device = resolve_device(cfg.train.device)
        self.progress = progress
        self.method.to(self.device)
        self.log_marginal: torch.Tensor | None = None

    def autocast(self):
        return autocast_for(self.device)

    def views(self, images: LabelledImages) -> SelfTrainingViews:
        bb, p = self.method.backbone, self.method.params
        return SelfTrainingViews(images, bb.image_size, bb.image_mean, bb.image_std, crops=p.crops,
                                 crop_scale=p.crop_scale, strong_scale=p.strong_scale, randaugment=p.randaugment,
                                 seed=self.cfg.train.seed)

    # ------------------------------------------------------------------ one step
    @torch.no_grad()
    def pseudo_labels(self, weak: torch.Tensor, crops: torch.Tensor) -> PseudoLabels:
        """y_hat = argmax(gamma s_static + (1 - gamma) s_dyn) for weak views [B, 3, S, S] and
        crops [B, M, 3, S, S] (M may be 0: the weak view alone is the prior)."""
        method = self.method
        with self.autocast():
            weak_out = method.encode(weak)
            c_weak = weak_out.cls_embedding.float()
            if crops.shape[1] > 0:
                b, m = crops.shape[:2]
                crop_emb = method.cls_embedding(crops.flatten(0, 1)).float().view(b, m, -1)
                prior = multiview_composite(crop_emb, c_weak)
            else:
                prior = F.normalize(c_weak, dim=-1)
        s_static = prior @ method.llm_head.float().t()
        s_dynamic = weak_out.fused.float() @ method.classifier().float().t()
        labels = combine_scores(s_static, s_dynamic, method.params.gamma).argmax(dim=-1)
        return PseudoLabels(labels, s_static, s_dynamic)

    def loss(self, strong: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """CE on the strong view's fused logits + fairness_weight * L_fair; updates the
        running class marginal. Returns (loss, parts)."""
        method = self.method
        with self.autocast():
            logits = method.class_logits(method.encode(strong).mixed)
        ce = F.cross_entropy(logits.float(), targets)
        loss, parts = ce, {"ce": float(ce.detach())}
        weight = method.params.fairness_weight
        if weight > 0:
            log_marginal = update_log_marginal(self.log_marginal, logits)
            fair = fairness_loss(log_marginal)
            self.log_marginal = log_marginal.detach()
            loss = loss + weight * fair
            parts["fair"] = float(fair.detach())
        return loss, parts

    # ------------------------------------------------------------------ the loop
    def fit(self, images: LabelledImages, hidden_labels: np.ndarray | None = None,
            targets: Literal["pseudo", "true"] = "pseudo") -> SelfTrainResult:
        """Self-train on `images` (their labels are ignored); `hidden_labels` [N] or [N, 1]
        (-1 = unknown) only score the pseudo-labels in the history. No labels select an
        epoch: the method ends in its last epoch's state.

        targets="true" is the diagnostic upper bound, NOT label-free: the same recipe, views
        and trainable parts, with the loss's targets the `hidden_labels` instead of the
        pseudo-labels. What it reaches is the most self-training could reach with perfect
        pseudo-labels; when it stays near zero-shot, the features leave no headroom."""
        cfg, method = self.cfg.train, self.method
        n = len(images)
        if n == 0:
            raise ClipAdaptError("Self-training needs at least one training image; the train split is empty.")
        if targets not in ("pseudo", "true"):
            raise ClipAdaptError(f"Self-training targets must be 'pseudo' or 'true', got {targets!r}.")
        hidden = None if hidden_labels is None else np.asarray(hidden_labels, dtype=np.int64).reshape(n, -1)[:, 0]
        if targets == "true" and (hidden is None or (hidden == MISSING).any()):
            unknown = n if hidden is None else int((hidden == MISSING).sum())
            raise ClipAdaptError(f"The true-label upper bound needs the label of every training image; {unknown} of {n} "
                                 "have none. Run it on a labelled copy of the data, or self-train without it.")
        if cfg.epochs == 0:
            return SelfTrainResult()
        optimizer = build_optimizer(method, cfg)
        plan = SelfTrainingSteps(self, images, hidden, None if targets == "pseudo" else torch.as_tensor(hidden))
        train_epochs(plan, optimizer, [p for p in method.parameters() if p.requires_grad],
                     epochs=range(cfg.epochs), total=cfg.epochs, grad_clip=cfg.grad_clip, progress=self.progress,
                     description="adapt")
        method.eval()
        return plan.result

    # ------------------------------------------------------------------ zero-shot heads
    @torch.no_grad()
    def head_predictions(self, images: LabelledImages, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Predicted classes of every frozen head on `images` (centre crop), with the
        model as it is now: "zeroshot_templates" (c t_k^T), "zeroshot_descriptions" (c with
        the CuPL prototypes), "zeroshot_llm_head" (c W_LLM^T) and "microclip_fused" (the
        fused output with W*). Called before training, the first three are zero-shot CLIP."""
        method = self.method
        method.eval()
        source = ImageBatches(images, make_transform(method.backbone, train=False), num_workers=self.cfg.train.num_workers)
        heads = {"zeroshot_templates": method.template_head, "zeroshot_descriptions": method.description_head,
                 "zeroshot_llm_head": method.llm_head}
        out: dict[str, list] = {name: [] for name in [*heads, "microclip_fused"]}
        with progress_bar(self.progress) as bar:
            job = bar.add_task("zero-shot", total=len(images), info="")
            for batch, idx in source.batches(np.arange(len(images)), batch_size or self.cfg.train.eval_batch_size):
                with self.autocast():
                    enc = method.encode(batch.to(self.device, non_blocking=True))
                c = enc.cls_embedding.float()
                for name, head in heads.items():
                    out[name].append((c @ head.float().t()).argmax(-1).cpu().numpy())
                out["microclip_fused"].append(method.class_logits(enc.fused.float()).argmax(-1).cpu().numpy())
                bar.advance(job, len(idx))
        return {name: np.concatenate(parts) if parts else np.zeros(0, np.int64) for name, parts in out.items()}


class SelfTrainingSteps:
    """microCLIP's step for `engine.loop.train_epochs`: views of unlabelled images in a
    seeded order, pseudo-labels without gradient, the loss on the strong view, a cosine lr
    per iteration; after each epoch the pseudo-label statistics. No labels select: the
    last epoch is kept."""

    def __init__(self, trainer: SelfTrainer, images: LabelledImages, hidden: np.ndarray | None,
                 truth: torch.Tensor | None):
        cfg = trainer.cfg.train
        self.trainer, self.hidden, self.truth = trainer, hidden, truth
        self.dataset = trainer.views(images)
        self.steps_per_epoch = math.ceil(len(images) / cfg.batch_size)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.result = SelfTrainResult()

    def start_epoch(self, epoch: int):
        trainer, cfg = self.trainer, self.trainer.cfg.train
        self.started = time.perf_counter()
        trainer.method.train()
        trainer.method.backbone.eval()  # CLIP has no dropout / batch norm to switch, but stay explicit
        self.dataset.set_epoch(epoch)
        order = torch.randperm(len(self.dataset),
                               generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch)).tolist()
        self.seen: dict[str, list] = {"idx": [], "labels": [], "static": [], "dynamic": []}
        return DataLoader(Subset(self.dataset, order), batch_size=cfg.batch_size, shuffle=False,
                          num_workers=cfg.num_workers)

    def set_lr(self, optimizer, epoch: int, step: int) -> float:
        cfg = self.trainer.cfg.train
        lr = lr_at_epoch(step, cfg.lr, self.total_steps, 0, 0.0, cfg.min_lr)  # cosine per iteration
        set_lr(optimizer, lr)
        return lr

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        weak, strong, crops, idx = batch
        device = self.trainer.device
        weak, strong, crops = (t.to(device, non_blocking=True) for t in (weak, strong, crops))
        pl = self.trainer.pseudo_labels(weak, crops)
        target = pl.labels if self.truth is None else self.truth[idx].to(device)
        loss, parts = self.trainer.loss(strong, target)
        for key, value in (("idx", idx.numpy()), ("labels", pl.labels), ("static", pl.static.argmax(-1)),
                           ("dynamic", pl.dynamic.argmax(-1))):
            self.seen[key].append(value if isinstance(value, np.ndarray) else value.cpu().numpy())
        return loss, {"ce": 0.0, "fair": 0.0, **parts}

    def epoch_row(self, totals: EpochTotals, seen: dict[str, np.ndarray]) -> dict:
        """The epoch's history row: its losses, the pseudo-labels' spread and agreement, and
        (with hidden labels) their accuracy."""
        labels, static, dynamic = seen["labels"], seen["static"], seen["dynamic"]
        num_classes = self.trainer.method.attribute.num_classes
        entropy, counts = class_histogram_entropy(labels, num_classes)
        row = {"epoch": totals.epoch + 1, "lr": totals.lr, "train_loss": totals.mean("loss"),
               "train_ce": totals.mean("ce"), "train_fair": totals.mean("fair"), "pseudo_label_entropy": entropy,
               "pseudo_label_entropy_normalised": entropy / math.log(num_classes) if num_classes > 1 else 0.0,
               "pseudo_label_counts": counts.tolist(),
               "static_dynamic_agreement": float((static == dynamic).mean())}
        if self.hidden is not None:
            truth = self.hidden[seen["idx"]]
            known = truth != MISSING
            if known.any():
                row["pseudo_label_accuracy"] = float((labels[known] == truth[known]).mean())
                row["static_accuracy"] = float((static[known] == truth[known]).mean())
                row["dynamic_accuracy"] = float((dynamic[known] == truth[known]).mean())
                row["pseudo_labels_scored"] = int(known.sum())
        return row

    def end_epoch(self, totals: EpochTotals) -> tuple[bool, str]:
        row = self.epoch_row(totals, {key: np.concatenate(parts) for key, parts in self.seen.items()})
        row["seconds"] = round(time.perf_counter() - self.started, 2)
        self.result.history.append(row)
        acc = row.get("pseudo_label_accuracy")
        epochs = self.trainer.cfg.train.epochs
        return False, (f"epoch {totals.epoch + 1}/{epochs} loss {row['train_loss']:.3f}"
                       + (f" pseudo-acc {acc:.3f}" if acc is not None else ""))
