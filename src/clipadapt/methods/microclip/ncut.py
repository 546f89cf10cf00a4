"""Normalised Cut on patch tokens (SPEC 3, SOAP steps 1-3): which patches are foreground.

All of it is batched (no Python loop over images), runs without gradient, and solves the
eigen-problem in float64 by default whatever the token dtype: the graph is built from a
hard threshold, so nothing here is differentiable anyway, and eigh in half precision (or
its backward on near-degenerate eigenvalues) is where NaNs come from.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

ThresholdRule = Literal["std", "mean"]
EigenProblem = Literal["symmetric", "generalized"]

THRESHOLD_RULES: tuple[str, ...] = ("std", "mean")
EIGEN_PROBLEMS: tuple[str, ...] = ("symmetric", "generalized")


class ForegroundSplit(NamedTuple):
    """Result of thresholding a Fiedler vector.

    mask: [B, N] bool, True = foreground. fiedler: [B, N] the vector after the sign fix.
    seed: [B] long, the patch with the largest |f| (always foreground).
    flipped: [B] bool, True where the solver's sign was reversed by the sign fix.
    threshold: [B] the value f was compared against (after the sign fix).
    """

    mask: torch.Tensor
    fiedler: torch.Tensor
    seed: torch.Tensor
    flipped: torch.Tensor
    threshold: torch.Tensor


class NCutResult(NamedTuple):
    """Every intermediate of the Normalised Cut, for inspection and attention maps.

    similarity: [B, N, N] S = P P^T. affinity: [B, N, N] A (1 or weak_edge).
    eigenvalue: [B] the Fiedler eigenvalue. The rest as in `ForegroundSplit`. Tensors are
    in the solver dtype (float64 by default) and carry no gradient.
    """

    similarity: torch.Tensor
    affinity: torch.Tensor
    fiedler: torch.Tensor
    eigenvalue: torch.Tensor
    mask: torch.Tensor
    seed: torch.Tensor
    flipped: torch.Tensor
    threshold: torch.Tensor


def check_patch_tokens(patches: torch.Tensor, *, min_tokens: int = 1) -> None:
    """Raise ValueError unless `patches` is a floating [B, N, D] tensor with N >= min_tokens."""
    if not isinstance(patches, torch.Tensor):
        raise ValueError(f"patch tokens must be a torch.Tensor [B, N, D], got {type(patches).__name__}")
    if patches.dim() != 3:
        raise ValueError(f"patch tokens must have shape [B, N, D] (batch, patches, width), got shape {tuple(patches.shape)}")
    if not patches.is_floating_point():
        raise ValueError(f"patch tokens must be a floating-point tensor, got dtype {patches.dtype} (shape {tuple(patches.shape)})")
    b, n, d = patches.shape
    if b < 1 or d < 1 or n < min_tokens:
        raise ValueError(
            f"patch tokens of shape {tuple(patches.shape)} are too small: need B >= 1, D >= 1 and N >= {min_tokens} patches"
        )


def patch_affinity(
    patches: torch.Tensor,
    *,
    edge_threshold: float = 0.2,
    weak_edge: float = 1e-6,
    normalize: bool = False,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SOAP step 1: similarity S = P P^T and binary affinity A_ij = 1 if S_ij > tau else eps.

    The authors use raw dot products (no L2 normalisation); `normalize=True` switches to
    cosine similarity as in TokenCut. The weak edge (eps) keeps the graph connected so the
    degree matrix is invertible. Returns (S, A), both [B, N, N] in `dtype`, no gradient.
    """
    check_patch_tokens(patches)
    with torch.no_grad():
        p = patches.detach().to(dtype)
        if normalize:
            p = torch.nn.functional.normalize(p, dim=-1)
        s = p @ p.transpose(1, 2)
        # matmul may round S_ij and S_ji differently; a value on the threshold must not
        # make the graph (and so the Laplacian) asymmetric.
        s = 0.5 * (s + s.transpose(1, 2))
        a = torch.where(s > edge_threshold, torch.ones_like(s), torch.full_like(s, weak_edge))
    return s, a


def fiedler_vector(affinity: torch.Tensor, *, problem: EigenProblem = "symmetric") -> tuple[torch.Tensor, torch.Tensor]:
    """SOAP step 2: the Fiedler vector of the graph `affinity` ([B, N, N], symmetric).

    L_sym = D^{-1/2} (D - A) D^{-1/2} = I - D^{-1/2} A D^{-1/2}, D = diag(row sums of A);
    f = the eigenvector of the second smallest eigenvalue (torch.linalg.eigh, batched).
    problem="generalized" returns y = D^{-1/2} f rescaled to unit norm, the solution of
    (D - A) y = lambda D y that TokenCut uses (same eigenvalue, same signs, other scale).
    Returns (f [B, N], eigenvalue [B]) in the dtype of `affinity`; f's sign is arbitrary.
    """
    if affinity.dim() != 3 or affinity.shape[1] != affinity.shape[2]:
        raise ValueError(f"affinity must have shape [B, N, N], got shape {tuple(affinity.shape)}")
    if affinity.shape[1] < 2:
        raise ValueError(f"the Normalised Cut needs at least 2 patches, got affinity of shape {tuple(affinity.shape)}")
    if problem not in EIGEN_PROBLEMS:
        raise ValueError(f"problem must be one of {EIGEN_PROBLEMS}, got {problem!r}")
    with torch.no_grad():
        degree = affinity.sum(dim=-1)
        inv_sqrt_degree = degree.clamp_min(torch.finfo(affinity.dtype).tiny).rsqrt()
        eye = torch.eye(affinity.shape[-1], dtype=affinity.dtype, device=affinity.device)
        laplacian = eye - inv_sqrt_degree.unsqueeze(-1) * affinity * inv_sqrt_degree.unsqueeze(-2)
        eigenvalues, eigenvectors = torch.linalg.eigh(laplacian)  # ascending eigenvalues
        f = eigenvectors[..., 1]
        if problem == "generalized":
            f = inv_sqrt_degree * f
            f = f / f.norm(dim=-1, keepdim=True)
    return f, eigenvalues[..., 1]


def foreground_mask(fiedler: torch.Tensor, *, rule: ThresholdRule = "std") -> ForegroundSplit:
    """SOAP step 3: foreground M = f > threshold, after the sign fix.

    Sign fix: an eigenvector is only defined up to sign, so f is first multiplied by the
    sign of its largest-magnitude entry (the seed patch, which must be foreground), and only
    then thresholded; the result is therefore the same for f and -f. Threshold rules:
    "std" = std(f) (the authors'), "mean" = mean(f) (TokenCut's). The seed is always kept,
    so the mask is never empty. `fiedler` is [B, N]; returns a `ForegroundSplit`.
    """
    if fiedler.dim() != 2 or fiedler.shape[1] < 1:
        raise ValueError(f"fiedler vector must have shape [B, N], got shape {tuple(fiedler.shape)}")
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule must be one of {THRESHOLD_RULES}, got {rule!r}")
    with torch.no_grad():
        f = fiedler.detach()
        seed = f.abs().argmax(dim=-1)
        seed_value = f.gather(-1, seed.unsqueeze(-1))
        flipped = (seed_value < 0).squeeze(-1)
        f = torch.where(seed_value < 0, -f, f)
        if rule == "std":
            # unbiased (N - 1), as torch.std in the authors' code; a single patch has no spread
            threshold = f.std(dim=-1) if f.shape[-1] > 1 else torch.zeros_like(f[:, 0])
        else:
            threshold = f.mean(dim=-1)
        mask = f > threshold.unsqueeze(-1)
        mask.scatter_(-1, seed.unsqueeze(-1), True)
    return ForegroundSplit(mask, f, seed, flipped, threshold)


def normalized_cut(
    patches: torch.Tensor,
    *,
    edge_threshold: float = 0.2,
    weak_edge: float = 1e-6,
    normalize: bool = False,
    problem: EigenProblem = "symmetric",
    threshold_rule: ThresholdRule = "std",
    dtype: torch.dtype = torch.float64,
) -> NCutResult:
    """SOAP steps 1-3 in one call: affinity, Fiedler vector, sign-fixed foreground mask.

    patches: [B, N, D] (N >= 2), any float dtype and device; solved in `dtype`.
    Returns an `NCutResult` (no gradient: the mask only selects which tokens form the query).
    """
    check_patch_tokens(patches, min_tokens=2)
    similarity, affinity = patch_affinity(
        patches, edge_threshold=edge_threshold, weak_edge=weak_edge, normalize=normalize, dtype=dtype
    )
    f, eigenvalue = fiedler_vector(affinity, problem=problem)
    split = foreground_mask(f, rule=threshold_rule)
    return NCutResult(similarity, affinity, split.fiedler, eigenvalue, split.mask, split.seed, split.flipped, split.threshold)
