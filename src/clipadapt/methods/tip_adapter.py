"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022, arXiv 2207.09519): a key-value
cache of the few-shot training set's CLIP image features, blended with zero-shot CLIP.

For a test image with L2-normalised embedding f, per attribute:

    A      = exp(-beta * (1 - f F^T))                  affinity with the cache keys F [N, E]
    logits = s * f W_c^T + alpha * A L                  s: the backbone's logit scale (100 for CLIP)

F: the N training images' embeddings, each the mean of its `augment_views` augmented views,
then L2-normalised; L [N, K]: their one-hot labels (a zero row where the image is not
labelled for the attribute); W_c: the normalised class prompts' text features. The
authors' code (gaopengcuhk/Tip-Adapter, utils.py `build_cache_model`, main.py) is followed
step by step: tests/test_tip_adapter.py recomputes it plainly and compares.

`tip_adapter` trains nothing. `tip_adapter_f` trains F (initialised from the cache, the
authors' `adapter.weight`, never re-normalised) through the engine's one training loop
with alpha and beta at their initial values. Both then choose alpha and beta per attribute
on the validation split with the authors' grid (`search_hp`), by accuracy; the authors
searched on the test set where a data set has no validation split (ImageNet), we never
do: without one the initial values stay (with a warning).
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from clipadapt.errors import ClipAdaptError, ClipAdaptWarning
from clipadapt.methods.base import Method, MethodParams, TextClassifier, cosine_logits, register_method
from clipadapt.task import MISSING

LOG = logging.getLogger(__name__)


class NoValidationWarning(ClipAdaptWarning):
    """A method that chooses settings on the validation split ran without one: it kept its
    initial settings."""


class TipAdapterParams(MethodParams):
    # The authors' configs (configs/imagenet.yaml, oxford_pets.yaml): init_alpha 1.17, init_beta 1.
    alpha: float = Field(1.17, ge=0.0)  # residual ratio: weight of the cache's logits
    beta: float = Field(1.0, gt=0.0)  # sharpness ratio of the affinity
    augment_views: int = Field(10, ge=1)  # augment_epoch: augmented views averaged per cache key
    search: bool = True  # search_hp: choose alpha and beta on the validation split
    # (largest value, number of values) of each grid, the authors' search_scale / search_step:
    # values 0.1 + i * (largest - 0.1) / number, i = 0 .. number - 1 (ImageNet's config)
    search_beta: tuple[float, int] = (7.0, 200)
    search_alpha: tuple[float, int] = (3.0, 20)
    # Rows of the cache: set by training (the number of training images) and recorded in the
    # run card, so a run folder rebuilds a cache of its size; leave it unset.
    cache_size: int | None = Field(None, ge=0)

    @field_validator("search_beta", "search_alpha")
    @classmethod
    def _grid(cls, v):
        if v[0] <= 0.1 or v[1] < 1:
            raise ValueError(f"a grid is (largest value > 0.1, number of values >= 1), got {list(v)}")
        return v


def grid(largest: float, number: int) -> list[float]:
    """The authors' search values: 0.1 + i (largest - 0.1) / number for i < number.

    >>> [round(v, 3) for v in grid(3.0, 4)]
    [0.1, 0.825, 1.55, 2.275]
    """
    return [i * (largest - 0.1) / number + 0.1 for i in range(number)]


def cache_logits(affinity: torch.Tensor, values: torch.Tensor, beta) -> torch.Tensor:
    """exp(-beta (1 - affinity)) L: [B, K] from the affinities [B, N] and the values [N, K]."""
    return torch.exp(-beta * (1.0 - affinity)) @ values.to(affinity.dtype)


@register_method("tip_adapter")
class TipAdapter(Method):
    """Zero-shot CLIP plus a cache of the training set's features; nothing trained."""

    summary = ("Tip-Adapter: a cache of the few-shot training features and labels blended with zero-shot CLIP "
               "(alpha, beta chosen on validation); nothing is trained")
    Params = TipAdapterParams
    trains = False
    fits_features = True
    family_notes = {"siglip": "zero-shot term scaled by SigLIP's own logit scale (its bias shifts every class "
                              "alike, so it is left out); the cache term as on CLIP"}

    def __init__(self, backbone, task, params: TipAdapterParams):
        super().__init__(backbone, task, params)
        if task.multilabel:
            raise ClipAdaptError(f"{self.name} scores single-label attributes (a cache of one-hot labels, its "
                                 "alpha and beta chosen by accuracy); this task is multi-label. Use promptpar, "
                                 "mhadapter or linear_probe for multi-label attributes.")
        self.text = TextClassifier(backbone, task)
        rows = params.cache_size or 0
        self._set_keys(torch.zeros(rows, backbone.embed_dim))
        for a, attr in enumerate(task.attributes):
            self.register_buffer(f"cache_values_{a}", torch.zeros(rows, attr.num_classes))
        self.register_buffer("alpha", torch.full((len(task),), float(params.alpha)))
        self.register_buffer("beta", torch.full((len(task),), float(params.beta)))

    def _set_keys(self, keys: torch.Tensor) -> None:
        """The cache keys F [N, E]: a buffer here (Tip-Adapter-F: a trained parameter)."""
        if "cache_keys" in self._buffers:
            self.cache_keys = keys
        else:
            self.register_buffer("cache_keys", keys)

    def values(self, attribute: int) -> torch.Tensor:
        return getattr(self, f"cache_values_{attribute}")

    # ------------------------------------------------------------ the cache
    def feature_views(self) -> int:
        return self.params.augment_views

    def fit_features(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """The cache from the training set: keys = the normalised mean embeddings [N, E]
        (the authors average the raw features over the augmented views, then normalise),
        values = one-hot labels per attribute; alpha and beta back at their initial values."""
        device = self.temperature.device
        keys = F.normalize(embeddings.detach().float(), dim=-1).to(device)
        self._set_keys(keys)
        labels = torch.as_tensor(labels).to(device)
        for a, attr in enumerate(self.task.attributes):
            column = labels[:, a]
            one_hot = torch.zeros(len(column), attr.num_classes, device=device)
            known = column != MISSING
            one_hot[known] = F.one_hot(column[known].long(), attr.num_classes).float()
            setattr(self, f"cache_values_{a}", one_hot)
        self.alpha.fill_(float(self.params.alpha))
        self.beta.fill_(float(self.params.beta))
        self.params = self.params.model_copy(update={"cache_size": len(keys)})

    @torch.no_grad()
    def select_on_validation(self, embeddings, labels) -> None:
        """The authors' grid search (`search_hp`): beta over `search_beta`, alpha over
        `search_alpha`, the first pair of highest validation accuracy, per attribute."""
        if not self.params.search:
            return
        if embeddings is None or not len(embeddings):
            warnings.warn(f"{self.name}: the data has no validation split, so alpha and beta keep their initial "
                          f"values (alpha {self.params.alpha}, beta {self.params.beta}); they are never chosen on "
                          "the test split. Give the data a validation split (e.g. data.val_fraction) to search them.",
                          NoValidationWarning, stacklevel=2)
            return
        f = F.normalize(embeddings.float().to(self.cache_keys.device), dim=-1)
        affinity = f @ self.cache_keys.detach().float().t()
        labels = torch.as_tensor(labels).to(f.device)
        scale = self.backbone.logit_scale
        betas, alphas = grid(*self.params.search_beta), grid(*self.params.search_alpha)
        for a in range(len(self.task)):
            known = labels[:, a] != MISSING
            if not bool(known.any()):
                continue
            target = labels[known, a]
            zero_shot = cosine_logits(f[known], self.text.weights(a).float(), scale)
            best = None
            for beta in betas:
                cache = cache_logits(affinity[known], self.values(a), beta)
                for alpha in alphas:
                    correct = int(((zero_shot + cache * alpha).argmax(1) == target).sum())
                    if best is None or correct > best[0]:
                        best = (correct, alpha, beta)
            self.alpha[a], self.beta[a] = best[1], best[2]
            LOG.info("%s: %s alpha %.3f beta %.3f (validation accuracy %.4f)", self.name,
                     self.task.attributes[a].name, best[1], best[2], best[0] / len(target))

    def chosen(self) -> dict[str, dict[str, float]]:
        """alpha and beta per attribute, as the run uses them."""
        return {attr.name: {"alpha": float(self.alpha[a]), "beta": float(self.beta[a])}
                for a, attr in enumerate(self.task.attributes)}

    # ------------------------------------------------------------ the logits
    def logits(self, features):
        f = F.normalize(features.embedding, dim=-1)
        affinity = f @ self.cache_keys.to(f.dtype).t()
        scale = self.backbone.logit_scale
        return [cosine_logits(f, self.text.weights(a), scale) + self.alpha[a] * cache_logits(affinity, self.values(a),
                                                                                             self.beta[a])
                for a in range(len(self.task))]

    def export_refusal(self) -> str | None:
        if not len(self.cache_keys):
            return f"{self.name}'s cache is empty (the run was never fitted on training images); train it first."
        return None


@register_method("tip_adapter_f")
class TipAdapterF(TipAdapter):
    """Tip-Adapter with its cache keys fine-tuned (the values and both towers frozen)."""

    summary = ("Tip-Adapter-F: Tip-Adapter whose cache keys are fine-tuned (AdamW lr 1e-3, 20 epochs, cosine), "
               "then alpha, beta chosen on validation")
    trains = True
    # The authors' main.py / configs: AdamW (torch's default weight decay 0.01, eps 1e-4: the
    # keys' parameter group), lr 0.001, cosine to 0 without warm-up, train_epoch 20, every
    # epoch run (the kept one chosen by accuracy; theirs on the test set, ours on validation).
    train_defaults = {"lr": 1e-3, "epochs": 20, "warmup_epochs": 0, "weight_decay": 0.01, "patience": None,
                      "monitor": "accuracy"}
    ADAM_EPS = 1e-4

    def _set_keys(self, keys: torch.Tensor) -> None:
        self.cache_keys = nn.Parameter(keys)

    def param_group_options(self, name: str) -> dict:
        return {"eps": self.ADAM_EPS} if name == "cache_keys" else {}
