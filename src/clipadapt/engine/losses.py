"""The four losses of SPEC section 1, applied per attribute on labelled rows only."""

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


class AttributeLoss:
    """Sum over attributes of each attribute's loss on its labelled rows (label != -1)."""

    def __init__(self, kind: str, counts: list[np.ndarray], gamma: float = 2.0, cb_beta: float = 0.999):
        self.kind = kind
        self.gamma = gamma
        self.weights = [class_weights(c, "weighted_ce" if kind == "focal" else kind, cb_beta) for c in counts]

    def __call__(self, logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        total = logits[0].new_zeros((), dtype=torch.float32)
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
