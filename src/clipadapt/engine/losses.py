"""The four losses of SPEC section 1 and the multi-label BCE losses of SPEC section 2,
applied per attribute on labelled rows only."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from clipadapt.task import MISSING


def class_weights(counts: np.ndarray, kind: str, cb_beta: float = 0.999) -> torch.Tensor | None:
    """Per-class weights normalised to sum 1, or None for plain CE.

    weighted_ce / focal: inverse frequency; class_balanced: (1 - b) / (1 - b^n_c) (Cui et
    al. 2019). A class absent from training gets weight 0 (it cannot be learned anyway).
    """
    if kind == "ce":
        return None
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    w = np.zeros_like(counts)
    if kind == "class_balanced":
        w[present] = (1.0 - cb_beta) / (1.0 - np.power(cb_beta, counts[present]))
    else:
        w[present] = 1.0 / counts[present]
    return torch.tensor(w / w.sum(), dtype=torch.float32)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor | None, gamma: float) -> torch.Tensor:
    """mean over samples of -alpha_t (1 - p_t)^gamma log p_t."""
    logp = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)
    loss = -((1.0 - logp.exp()) ** gamma) * logp
    if alpha is not None:
        loss = loss * alpha.to(loss.device)[target]
    return loss.mean()


BINARY_LOSSES = ("bce", "weighted_bce")


def resolve_loss(kind: str, multilabel: bool) -> str:
    """The loss that "auto" stands for: weighted BCE for multi-label tasks, CE otherwise."""
    if kind == "auto":
        return "weighted_bce" if multilabel else "ce"
    return kind


def bce_weights(counts: np.ndarray, kind: str) -> torch.Tensor:
    """[w_negative, w_positive] of one binary attribute. weighted_bce (Strong Baseline,
    SPEC 2): with training positive rate r, positives weigh exp(1 - r), negatives exp(r)."""
    if kind == "bce":
        return torch.ones(2)
    counts = np.asarray(counts, dtype=np.float64)
    rate = counts[1] / max(counts.sum(), 1.0)
    return torch.tensor([np.exp(rate), np.exp(1.0 - rate)], dtype=torch.float32)


def binary_logit(logits: torch.Tensor) -> torch.Tensor:
    """The sigmoid logit of a two-class output: softmax([l0, l1])[1] = sigmoid(l1 - l0)."""
    return logits[:, 1] - logits[:, 0]


class AttributeLoss:
    """Sum over attributes of each attribute's loss on its labelled rows (label != -1).

    The BCE kinds need binary attributes: they score sigmoid(l_yes - l_no), summed over
    attributes and labelled entries and divided by the batch size (the PAR convention).
    """

    def __init__(self, kind: str, counts: list[np.ndarray], gamma: float = 2.0, cb_beta: float = 0.999):
        self.kind = kind
        self.gamma = gamma
        if kind in BINARY_LOSSES:
            wide = [len(c) for c in counts if len(c) != 2]
            if wide:
                raise ValueError(f"train.loss={kind} needs binary attributes; got {wide[0]} classes. Use ce.")
            self.weights = [bce_weights(c, kind) for c in counts]
        else:
            self.weights = [class_weights(c, "weighted_ce" if kind == "focal" else kind, cb_beta) for c in counts]

    def __call__(self, logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        total = logits[0].new_zeros((), dtype=torch.float32)
        if self.kind in BINARY_LOSSES:
            return self._binary(logits, labels)
        for a, lg in enumerate(logits):
            keep = labels[:, a] != MISSING
            if not keep.any():
                continue
            target = labels[keep, a]
            w = self.weights[a]
            if self.kind == "focal":
                total = total + focal_loss(lg[keep], target, w, self.gamma)
            else:
                total = total + F.cross_entropy(lg[keep].float(), target, weight=None if w is None else w.to(lg.device))
        return total

    def _binary(self, logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        z = torch.stack([binary_logit(lg.float()) for lg in logits], dim=1)  # [B, A]
        keep = labels != MISSING
        target = labels.clamp(min=0).float()
        w = torch.stack(self.weights).to(z.device)  # [A, 2]
        weight = torch.where(target > 0, w[:, 1], w[:, 0]) * keep
        per_entry = F.binary_cross_entropy_with_logits(z, target, reduction="none")
        return (per_entry * weight).sum() / max(len(labels), 1)
