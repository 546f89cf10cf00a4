"""microCLIP's self-training (SPEC 3): its views, pseudo-labels, loss and epoch statistics,
the parts of a label-free step that `clipadapt.engine.selftrain` runs in its generic loop.

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
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import transforms as T

from clipadapt.data.images import load_image
from clipadapt.data.transforms import BICUBIC
from clipadapt.errors import ClipAdaptError
from clipadapt.task import MISSING

if TYPE_CHECKING:
    from clipadapt.data.dataset import LabelledImages

FAIRNESS_SCALE = 2.0  # L_fair = -2 mean_k log p_bar_k (SPEC 3, MUST's fairness term)

# The authors' recipe (SPEC 3): used for every train.* key a config does not set
# (`MicroCLIP.train_defaults`).
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


def microclip_train_defaults(train):
    """`train` (a TrainConfig) with the microCLIP recipe (MICROCLIP_RECIPE) for every key it
    does not set."""
    unset = {k: v for k, v in MICROCLIP_RECIPE.items() if k not in train.model_fields_set}
    return train.model_copy(update=unset)


# ----------------------------------------------------------------------------- the step's parts
@dataclass
class PseudoLabels:
    """One batch's pseudo-labels and the scores behind them (all without gradient)."""

    labels: torch.Tensor  # [B] y_hat
    static: torch.Tensor  # [B, K] composite W_LLM^T
    dynamic: torch.Tensor  # [B, K] z(weak) W*^T

    def recorded(self) -> dict[str, torch.Tensor]:
        """Per image, what the epoch statistics read: y_hat and each score's own argmax."""
        return {"labels": self.labels, "static": self.static.argmax(-1), "dynamic": self.dynamic.argmax(-1)}


class MicroCLIPSelfTraining:
    """What `MicroCLIP.self_training()` gives the engine's self-trainer: the views of an
    image, the pseudo-labels, the loss (with the running class marginal it keeps), each
    epoch's statistics and the frozen heads' predictions. `autocast()` is the device's
    mixed precision (CPU fp32, CUDA bf16), applied to the image passes only."""

    loss_parts = ("ce", "fair")  # the loss terms every history row reports (0 when off)
    head_names = ("zeroshot_templates", "zeroshot_descriptions", "zeroshot_llm_head", "microclip_fused")
    # `clipadapt adapt`'s comparison table: its rows in order, each with its label (the
    # last one is the method itself, after self-training)
    comparison_rows = {
        "zeroshot_templates": "zero-shot CLIP, templates",
        "zeroshot_descriptions": "zero-shot CLIP, descriptions (CuPL)",
        "zeroshot_llm_head": "zero-shot CLIP, LLM head",
        "microclip_init": "microCLIP before adaptation (fused, W* init)",
        "microclip": "microCLIP (self-trained, no labels)",
    }
    upper_bound_row = "microCLIP recipe on the true labels (upper bound)"  # its row with --true-labels

    def __init__(self, method, autocast):
        self.method = method
        self.autocast = autocast
        self.log_marginal: torch.Tensor | None = None  # log p_bar, carried from step to step

    def views(self, images: LabelledImages, seed: int) -> SelfTrainingViews:
        """Items (weak, strong, crops, index) of `images`, seeded by (seed, epoch, index)."""
        bb, p = self.method.backbone, self.method.params
        return SelfTrainingViews(images, bb.image_size, bb.image_mean, bb.image_std, crops=p.crops,
                                 crop_scale=p.crop_scale, strong_scale=p.strong_scale, randaugment=p.randaugment,
                                 seed=seed)

    @staticmethod
    def split(batch) -> tuple[tuple, tuple, torch.Tensor]:
        """A batch of views as (what labels it: weak, crops), (what learns: strong), indices."""
        weak, strong, crops, idx = batch
        return (weak, crops), (strong,), idx

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

    def epoch_row(self, totals, seen: dict[str, np.ndarray], hidden: np.ndarray | None) -> dict:
        """The epoch's history row: its losses, the pseudo-labels' spread and agreement, and
        (with hidden labels) their accuracy. `totals`: the loop's EpochTotals; `seen`: what
        `PseudoLabels.recorded` kept, with "idx", over the epoch."""
        labels, static, dynamic = seen["labels"], seen["static"], seen["dynamic"]
        num_classes = self.method.attribute.num_classes
        entropy, counts = class_histogram_entropy(labels, num_classes)
        row = {"epoch": totals.epoch + 1, "lr": totals.lr, "train_loss": totals.mean("loss"),
               "train_ce": totals.mean("ce"), "train_fair": totals.mean("fair"), "pseudo_label_entropy": entropy,
               "pseudo_label_entropy_normalised": entropy / math.log(num_classes) if num_classes > 1 else 0.0,
               "pseudo_label_counts": counts.tolist(),
               "static_dynamic_agreement": float((static == dynamic).mean())}
        if hidden is not None:
            truth = hidden[seen["idx"]]
            known = truth != MISSING
            if known.any():
                row["pseudo_label_accuracy"] = float((labels[known] == truth[known]).mean())
                row["static_accuracy"] = float((static[known] == truth[known]).mean())
                row["dynamic_accuracy"] = float((dynamic[known] == truth[known]).mean())
                row["pseudo_labels_scored"] = int(known.sum())
        return row

    def rows_before_training(self, predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The comparison rows among the heads' predictions before training: the fused
        output as "microclip_init"; without descriptions the description heads are the
        template head, so they are left out."""
        rows = {"microclip_init" if name == "microclip_fused" else name: preds for name, preds in predictions.items()}
        if self.method.params.descriptions is None:
            rows = {k: v for k, v in rows.items() if k not in ("zeroshot_descriptions", "zeroshot_llm_head")}
        return rows

    @torch.no_grad()
    def head_predictions(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """Predicted classes of every frozen head for a batch of centre-cropped images, with
        the model as it is now: "zeroshot_templates" (c t_k^T), "zeroshot_descriptions" (c
        with the CuPL prototypes), "zeroshot_llm_head" (c W_LLM^T) and "microclip_fused" (the
        fused output with W*). Before training, the first three are zero-shot CLIP."""
        method = self.method
        with self.autocast():
            enc = method.encode(batch)
        c = enc.cls_embedding.float()
        heads = {"zeroshot_templates": method.template_head, "zeroshot_descriptions": method.description_head,
                 "zeroshot_llm_head": method.llm_head}
        out = {name: (c @ head.float().t()).argmax(-1).cpu().numpy() for name, head in heads.items()}
        out["microclip_fused"] = method.class_logits(enc.fused.float()).argmax(-1).cpu().numpy()
        return out
