"""SOAP, saliency-oriented attention pooling (SPEC 3, steps 1-4): patch tokens -> [FG] token.

q = mean of the patch tokens P over the Normalised-Cut foreground M; one attention head
over the N patches plus an all-zero "null" token:
    alpha = softmax((W_q q)(W_k P')^T / sqrt(D)),  FG = sum_i alpha_i W_v P'_i,
with W_q, W_k, W_v in R^{D x D}, no bias, initialised to the identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from clipadapt.methods.microclip.ncut import (
    EIGEN_PROBLEMS,
    THRESHOLD_RULES,
    EigenProblem,
    NCutResult,
    ThresholdRule,
    check_patch_tokens,
    normalized_cut,
)

QuerySource = Literal["ncut", "mean", "cls"]
Pooling = Literal["attention", "mean", "ncut_mean"]
NullToken = Literal["zero", "learned", "none"]

QUERY_SOURCES: tuple[str, ...] = ("ncut", "mean", "cls")
POOLINGS: tuple[str, ...] = ("attention", "mean", "ncut_mean")
NULL_TOKENS: tuple[str, ...] = ("zero", "learned", "none")


@dataclass
class SOAPOutput:
    """What SOAP computed, for the loss and for attention maps.

    fg_token: [B, D] the pooled token FG = sum_i w_i W_v P_i (+ null), in the input dtype.
    patch_weights: [B, N] weight of each patch in the pool (attention alpha_i, or the
        uniform / masked-uniform weights of the mean-pooling ablations).
    null_weight: [B] attention on the null token (zeros when there is none).
    query: [B, D] the query before W_q (None for the mean-pooling ablations).
    ncut: the Normalised Cut intermediates (None when the settings need no NCut).
    """

    fg_token: torch.Tensor
    patch_weights: torch.Tensor
    null_weight: torch.Tensor
    query: torch.Tensor | None
    ncut: NCutResult | None


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def identity_linear(width: int) -> nn.Linear:
    """A bias-free D x D projection initialised to the identity (SPEC: W_q, W_k, W_v = I)."""
    layer = nn.Linear(width, width, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(width))
    return layer


def _project(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    # float64 tokens through float32 weights (or the reverse) would fail in F.linear
    return F.linear(x, layer.weight.to(x.dtype))


class SOAP(nn.Module):
    """Saliency-oriented attention pooling of patch tokens into one [FG] token (SPEC 3).

    Default (the paper): NCut foreground of the affinity S = P P^T thresholded at
    `edge_threshold` (weak edges `weak_edge`), mask M = sign-fixed Fiedler vector >
    threshold (`threshold_rule` "std" or "mean"), query q = mean of P over M, one head of
    attention over [P; null] with identity-initialised W_q, W_k, W_v and scale 1/sqrt(D).

    Ablation switches:
      query: "ncut" (masked mean), "mean" (mean of all patches: no NCut), "cls" (the
          pre-projection [CLS] token ln_post(x_L[CLS]) as query).
      pooling: "attention" (SOAP), "mean" (plain mean of P), "ncut_mean" (mean of P over M);
          the two mean poolings have no parameters.
      null_token: "zero" (SPEC: an all-zero token, i.e. logit 0 and value 0), "learned"
          (a trainable token initialised to zero, as the authors' code allows), "none".
      normalize_affinity: cosine instead of raw dot products; eigen_problem: "symmetric"
          (L_sym eigenvector, SPEC) or "generalized" (TokenCut's D^{-1/2}-scaled vector);
          eig_dtype: the solver dtype.

    forward(patches [B, N, D], cls_token [B, D] or None) -> `SOAPOutput`.

    Example:
        >>> soap = SOAP(64)
        >>> out = soap(torch.randn(2, 49, 64))
        >>> out.fg_token.shape, out.patch_weights.shape, out.null_weight.shape
        (torch.Size([2, 64]), torch.Size([2, 49]), torch.Size([2]))
    """

    def __init__(
        self,
        width: int,
        *,
        query: QuerySource = "ncut",
        pooling: Pooling = "attention",
        null_token: NullToken = "zero",
        threshold_rule: ThresholdRule = "std",
        edge_threshold: float = 0.2,
        weak_edge: float = 1e-6,
        normalize_affinity: bool = False,
        eigen_problem: EigenProblem = "symmetric",
        eig_dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive int (the token width D), got {width!r}")
        if not (isinstance(eig_dtype, torch.dtype) and eig_dtype.is_floating_point):
            raise ValueError(f"eig_dtype must be a floating torch dtype (float32 or float64), got {eig_dtype!r}")
        self.width = width
        self.query_source = _choice("query", query, QUERY_SOURCES)
        self.pooling = _choice("pooling", pooling, POOLINGS)
        self.null_token = _choice("null_token", null_token, NULL_TOKENS)
        self.threshold_rule = _choice("threshold_rule", threshold_rule, THRESHOLD_RULES)
        self.eigen_problem = _choice("eigen_problem", eigen_problem, EIGEN_PROBLEMS)
        self.edge_threshold = float(edge_threshold)
        self.weak_edge = float(weak_edge)
        self.normalize_affinity = bool(normalize_affinity)
        self.eig_dtype = eig_dtype
        if self.pooling == "attention":
            # names match the authors' checkpoints (query_proj / key_proj / value_proj)
            self.query_proj = identity_linear(width)
            self.key_proj = identity_linear(width)
            self.value_proj = identity_linear(width)
            if self.null_token == "learned":
                self.null_embedding = nn.Parameter(torch.zeros(width))

    @property
    def needs_ncut(self) -> bool:
        """True when the settings use the foreground mask (NCut query or NCut mean pooling)."""
        if self.pooling == "attention":
            return self.query_source == "ncut"
        return self.pooling == "ncut_mean"

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay (SPEC: none on the identity-init projections)."""
        return {name for name, _ in self.named_parameters()}

    def extra_repr(self) -> str:
        return (
            f"width={self.width}, query={self.query_source!r}, pooling={self.pooling!r}, null_token={self.null_token!r}, "
            f"threshold_rule={self.threshold_rule!r}, edge_threshold={self.edge_threshold}"
        )

    def foreground(self, patches: torch.Tensor) -> NCutResult:
        """The Normalised Cut of `patches` [B, N, D] with this module's settings."""
        return normalized_cut(
            patches,
            edge_threshold=self.edge_threshold,
            weak_edge=self.weak_edge,
            normalize=self.normalize_affinity,
            problem=self.eigen_problem,
            threshold_rule=self.threshold_rule,
            dtype=self.eig_dtype,
        )

    def _check_inputs(self, patches: torch.Tensor, cls_token: torch.Tensor | None) -> None:
        check_patch_tokens(patches, min_tokens=2 if self.needs_ncut else 1)
        if patches.shape[-1] != self.width:
            raise ValueError(f"patch tokens have width {patches.shape[-1]} (shape {tuple(patches.shape)}), SOAP was built for width {self.width}")
        if self.pooling == "attention" and self.query_source == "cls" and cls_token is None:
            raise ValueError("query='cls' needs the [CLS] token: call soap(patches, cls_token) with cls_token of shape [B, D]")
        if cls_token is not None:
            expected = (patches.shape[0], self.width)
            if not isinstance(cls_token, torch.Tensor) or tuple(cls_token.shape) != expected:
                shape = tuple(cls_token.shape) if isinstance(cls_token, torch.Tensor) else type(cls_token).__name__
                raise ValueError(f"cls_token must have shape [B, D] = {expected}, got shape {shape}")
            if not cls_token.is_floating_point():
                raise ValueError(f"cls_token must be a floating-point tensor, got dtype {cls_token.dtype}")

    def forward(self, patches: torch.Tensor, cls_token: torch.Tensor | None = None) -> SOAPOutput:
        """Pool patch tokens [B, N, D] into the [FG] token; `cls_token` [B, D] only for query='cls'."""
        self._check_inputs(patches, cls_token)
        b, n, d = patches.shape
        ncut = self.foreground(patches) if self.needs_ncut else None
        # at least float32 (or the parameters' dtype if wider); autocast still lowers the
        # matmuls when it is on, and the result goes back to the input dtype at the end
        work = torch.promote_types(patches.dtype, torch.float32)
        if self.pooling == "attention":
            work = torch.promote_types(work, self.query_proj.weight.dtype)
        p = patches.to(work)
        mask_weights = None
        if ncut is not None:
            # the mask only selects tokens (no gradient through the cut); the tokens it
            # selects do carry gradient, so the LayerNorms upstream still learn from q
            m = ncut.mask.to(work)
            mask_weights = m / m.sum(dim=-1, keepdim=True)

        if self.pooling != "attention":
            weights = mask_weights if self.pooling == "ncut_mean" else p.new_full((b, n), 1.0 / n)
            fg = torch.einsum("bn,bnd->bd", weights, p)
            return SOAPOutput(fg.to(patches.dtype), weights, weights.new_zeros(b), None, ncut)

        if self.query_source == "ncut":
            q = torch.einsum("bn,bnd->bd", mask_weights, p)
        elif self.query_source == "mean":
            q = p.mean(dim=1)
        else:
            q = cls_token.to(work)

        tokens = p
        if self.null_token != "none":
            null = self.null_embedding.to(work) if self.null_token == "learned" else p.new_zeros(d)
            # a zero token under bias-free projections has key 0 and value 0: logit 0 and no
            # share in FG, so it only scales FG by (1 - alpha_null), which the later
            # normalise(FG @ proj) removes; a learned token can do more
            tokens = torch.cat([p, null.expand(b, 1, d)], dim=1)
        keys = _project(self.key_proj, tokens)
        values = _project(self.value_proj, tokens)
        logits = torch.einsum("bd,bnd->bn", _project(self.query_proj, q), keys) / math.sqrt(d)
        alpha = torch.softmax(logits.float(), dim=-1)  # fp32 softmax also under autocast
        fg = torch.einsum("bn,bnd->bd", alpha.to(values.dtype), values)
        null_weight = alpha[:, n] if self.null_token != "none" else alpha.new_zeros(b)
        return SOAPOutput(fg.to(patches.dtype), alpha[:, :n], null_weight, q, ncut)
