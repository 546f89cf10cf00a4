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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
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
from clipadapt.engine.schedule import lr_at_epoch
from clipadapt.engine.sources import ImageBatches, make_transform
from clipadapt.engine.trainer import progress_bar, resolve_device
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
        self.device = resolve_device(cfg.train.device)
        self.progress = progress
        self.method.to(self.device)
        self.log_marginal: torch.Tensor | None = None

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

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
        (-1 = unknown) only score the pseudo-labels in the history.

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
        truth = None if targets == "pseudo" else torch.as_tensor(hidden)
        dataset = self.views(images)
        optimizer = build_optimizer(method, cfg)
        trainable = [p for p in method.parameters() if p.requires_grad]
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        total_steps = cfg.epochs * steps_per_epoch
        num_classes = method.attribute.num_classes
        result, step = SelfTrainResult(), 0
        with progress_bar(self.progress) as bar:
            job = bar.add_task("adapt", total=total_steps, info="")
            for epoch in range(cfg.epochs):
                started = time.perf_counter()
                method.train()
                method.backbone.eval()  # CLIP has no dropout / batch norm to switch, but stay explicit
                dataset.set_epoch(epoch)
                order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch)).tolist()
                loader = DataLoader(Subset(dataset, order), batch_size=cfg.batch_size, shuffle=False,
                                    num_workers=cfg.num_workers)
                sums = {"loss": 0.0, "ce": 0.0, "fair": 0.0}
                seen_idx, seen_pl, seen_static, seen_dyn = [], [], [], []
                batches = 0
                for weak, strong, crops, idx in loader:
                    lr = lr_at_epoch(step, cfg.lr, total_steps, 0, 0.0, cfg.min_lr)  # cosine per iteration
                    for group in optimizer.param_groups:
                        group["lr"] = lr * group.get("lr_scale", 1.0)
                    weak, strong, crops = (t.to(self.device, non_blocking=True) for t in (weak, strong, crops))
                    pl = self.pseudo_labels(weak, crops)
                    target = pl.labels if truth is None else truth[idx].to(self.device)
                    loss, parts = self.loss(strong, target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
                    optimizer.step()
                    sums["loss"] += float(loss.detach())
                    for k, v in parts.items():
                        sums[k] += v
                    seen_idx.append(idx.numpy())
                    seen_pl.append(pl.labels.cpu().numpy())
                    seen_static.append(pl.static.argmax(-1).cpu().numpy())
                    seen_dyn.append(pl.dynamic.argmax(-1).cpu().numpy())
                    batches += 1
                    step += 1
                    bar.update(job, advance=1, info=f"epoch {epoch + 1}/{cfg.epochs} loss {float(loss.detach()):.3f}")
                row = self._epoch_row(epoch, lr, sums, batches, np.concatenate(seen_idx), np.concatenate(seen_pl),
                                      np.concatenate(seen_static), np.concatenate(seen_dyn), hidden, num_classes)
                row["seconds"] = round(time.perf_counter() - started, 2)
                result.history.append(row)
                acc = row.get("pseudo_label_accuracy")
                bar.update(job, info=f"epoch {epoch + 1}/{cfg.epochs} loss {row['train_loss']:.3f}"
                                     + (f" pseudo-acc {acc:.3f}" if acc is not None else ""))
        method.eval()
        return result

    @staticmethod
    def _epoch_row(epoch, lr, sums, batches, idx, labels, static, dynamic, hidden, num_classes) -> dict:
        entropy, counts = class_histogram_entropy(labels, num_classes)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": sums["loss"] / batches, "train_ce": sums["ce"] / batches,
               "train_fair": sums["fair"] / batches, "pseudo_label_entropy": entropy,
               "pseudo_label_entropy_normalised": entropy / math.log(num_classes) if num_classes > 1 else 0.0,
               "pseudo_label_counts": counts.tolist(),
               "static_dynamic_agreement": float((static == dynamic).mean())}
        if hidden is not None:
            truth = hidden[idx]
            known = truth != MISSING
            if known.any():
                row["pseudo_label_accuracy"] = float((labels[known] == truth[known]).mean())
                row["static_accuracy"] = float((static[known] == truth[known]).mean())
                row["dynamic_accuracy"] = float((dynamic[known] == truth[known]).mean())
                row["pseudo_labels_scored"] = int(known.sum())
        return row

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


# ----------------------------------------------------------------------------- whole runs
@dataclass
class AdaptOutcome:
    """What `adapt_run` wrote: the run folder, test metrics of microCLIP (None without a
    test split), the comparison table {row: {accuracy, macro_f1}}, the history and card."""

    run_dir: Path
    metrics: dict | None
    comparison: dict
    history: list[dict]
    card: dict


COMPARISON_ROWS = {
    "zeroshot_templates": "zero-shot CLIP, templates",
    "zeroshot_descriptions": "zero-shot CLIP, descriptions (CuPL)",
    "zeroshot_llm_head": "zero-shot CLIP, LLM head",
    "microclip_init": "microCLIP before adaptation (fused, W* init)",
    "microclip": "microCLIP (self-trained, no labels)",
}


def prepare_adapt_config(cfg: RunConfig, config_dir: Path | None = None) -> RunConfig:
    """The config an adapt run uses: method microclip, the microCLIP recipe for unset
    train.* keys, no validation split unless asked (there are no labels to select with),
    and method.params.descriptions resolved (relative paths against `config_dir` first;
    default data.root/descriptions.json when that file exists)."""
    if "name" in cfg.method.model_fields_set and cfg.method.name != "microclip":
        raise ClipAdaptError(f"`clipadapt adapt` runs the label-free method microclip; the config names method "
                             f"'{cfg.method.name}'. Remove method.name or set it to microclip "
                             "(use `clipadapt train` for supervised methods).")
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
    return cfg.model_copy(update={
        "method": cfg.method.model_copy(update={"name": "microclip", "params": params}),
        "train": microclip_train_defaults(cfg.train),
        "data": cfg.data.model_copy(update=data_update),
    })


def _scores(labels: np.ndarray, preds: np.ndarray, task) -> dict:
    from clipadapt.metrics.classification import attribute_metrics

    mean = attribute_metrics(labels, preds.reshape(-1, 1), task)["mean"]
    return {"accuracy": mean["accuracy"], "macro_f1": mean["macro_f1"]}


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
    from clipadapt.backbone import apply_preprocessing, backbone_from_config
    from clipadapt.config import dump_config
    from clipadapt.data.bad_images import record_skipped
    from clipadapt.data.formats import build_splits
    from clipadapt.engine.checkpoint import build_card, write_checkpoint
    from clipadapt.io import write_json, write_text
    from clipadapt.engine.progress import no_progress_message, no_progress_reasons
    from clipadapt.engine.trainer import Runner, seed_everything
    from clipadapt.errors import ClipAdaptWarning
    from clipadapt.methods.text_check import check_class_texts
    from clipadapt.methods import build_method
    from clipadapt.methods.microclip.method import resolve_descriptions
    from clipadapt.workflow import prepare_run_dir, write_evaluation

    cfg = prepare_adapt_config(cfg, config_dir)
    out = prepare_run_dir(out, resume=False)
    write_text(out / "config.yaml", dump_config(cfg))
    seed_everything(cfg.train.seed)
    splits = build_splits(cfg.data)
    if cfg.data.on_bad_image == "skip":  # like `train`: the images left out, with their reasons
        record_skipped(out, splits.skipped)
    task = splits.task
    if task.multilabel or len(task) != 1:
        raise ClipAdaptError("`clipadapt adapt` classifies one single-label attribute; the data has "
                             f"{len(task)} attribute(s){' (multi-label)' if task.multilabel else ''}.")
    hidden = splits.train.labels.copy()  # only for scoring the pseudo-labels
    unlabelled = LabelledImages(list(splits.train.paths), np.full_like(hidden, MISSING), task, splits.train.sources)
    params = dict(cfg.method.params)
    source_file = params.get("descriptions") if isinstance(params.get("descriptions"), str) else None
    if source_file is not None:  # inline the sentences: the card then rebuilds the heads without the file
        params["descriptions"] = resolve_descriptions(source_file, list(task.attributes[0].classes))
    if backbone is None:
        backbone = backbone_from_config(cfg.backbone)
    apply_preprocessing(backbone, cfg.backbone)
    method = build_method("microclip", backbone, task, params)
    notes = check_class_texts(method, stop=cfg.train.epochs > 0)  # classes its heads cannot tell apart
    trainer = SelfTrainer(method, cfg, progress=progress)

    comparison: dict[str, dict] = {}
    test = splits.test if splits.test is not None and len(splits.test) else None
    if test is not None:  # zero-shot first: self-training changes the LayerNorms in place
        before = trainer.head_predictions(test)
        if method.params.descriptions is None:  # the description heads are the template head then
            before = {k: v for k, v in before.items() if k not in ("zeroshot_descriptions", "zeroshot_llm_head")}
        for name, preds in before.items():
            comparison["microclip_init" if name == "microclip_fused" else name] = _scores(test.labels, preds, task)
    fit = trainer.fit(unlabelled, hidden_labels=hidden, targets="true" if true_labels else "pseudo")
    write_json(out / "history.json", fit.history)
    reasons = no_progress_reasons(fit.history, len(fit.history))
    notes += [no_progress_message("microclip", reasons)] if reasons else []
    for note in notes:
        warnings.warn(note, ClipAdaptWarning, stacklevel=2)
    flags = {"no_progress": bool(reasons), **({"warnings": notes} if notes else {})}

    metrics = None
    if test is not None:
        metrics, probs = Runner(method, cfg, progress=progress).evaluate(test, description="test")
        comparison["microclip"] = {"accuracy": metrics["mean"]["accuracy"], "macro_f1": metrics["mean"]["macro_f1"]}
        metrics["comparison"] = comparison
        metrics.update(flags)
        write_evaluation(out, metrics, probs, test, cfg.train.threshold)
    card = build_card(
        method, seed=cfg.train.seed, config=cfg.model_dump(mode="json"),
        data={"format": cfg.data.format, "train": len(splits.train), "val": 0, "test": len(test) if test else 0,
              "train_labels_used": bool(true_labels)},
        selection={"monitor": "none (the last epoch is kept)" if true_labels else
                   "none (label-free: the last epoch is kept)", "best_epoch": len(fit.history),
                   "best_score": None, "stopped_early": False, "epochs_run": len(fit.history)},
        metrics=metrics["mean"] if metrics else None,
        comparison=comparison or None,
        heads={**method.describe_heads(), "descriptions_file": source_file},
        self_training={"recipe": {k: getattr(cfg.train, k) for k in MICROCLIP_RECIPE},
                       "last_epoch": fit.history[-1] if fit.history else None},
        **flags,
    )
    write_checkpoint(out, method, card)
    if fit.history:
        from clipadapt.metrics.plots import plot_curves

        plot_curves(fit.history, out / "curves.png", keys=("train_loss", "train_ce", "pseudo_label_accuracy",
                                                           "pseudo_label_entropy_normalised"))
    return AdaptOutcome(out, metrics, comparison, fit.history, card)
