"""microCLIP SOAP / Normalised Cut / TokenFusion (SPEC 3) on hand-built token sets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipadapt.methods.microclip import (
    SOAP,
    TokenFusion,
    fiedler_vector,
    foreground_mask,
    normalized_cut,
    patch_affinity,
)

WIDTH = 64


def planted(seed: int, *, grid=(7, 7), block=(2, 2, 3), width=WIDTH, noise=0.05, scale=1.0, batch=None):
    """Patch tokens with a planted foreground: a k x k block near direction u, the rest near
    an orthogonal direction v, plus Gaussian noise. Returns (tokens [B?, N, D], mask [N])."""
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(width, 2, generator=gen, dtype=torch.float64))
    u, v = basis[:, 0], basis[:, 1]
    h, w = grid
    r0, c0, k = block
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[r0 : r0 + k, c0 : c0 + k] = True
    mask = mask.flatten()
    tokens = torch.where(mask[:, None], u, v) + noise * torch.randn(h * w, width, generator=gen, dtype=torch.float64)
    return (scale * tokens).float(), mask


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a & b).sum() / (a | b).sum()).item()


# --- (1) the Normalised Cut finds the planted block ------------------------------------------


@pytest.mark.parametrize("rule", ["std", "mean"])
@pytest.mark.parametrize("problem", ["symmetric", "generalized"])
@pytest.mark.parametrize("grid,block", [((7, 7), (2, 2, 3)), ((14, 14), (3, 5, 5)), ((4, 9), (0, 6, 3))])
def test_ncut_recovers_planted_block(rule, problem, grid, block):
    for seed in range(3):
        tokens, truth = planted(seed, grid=grid, block=block)
        result = normalized_cut(tokens[None], threshold_rule=rule, problem=problem)
        assert result.mask.shape == (1, grid[0] * grid[1])
        assert iou(result.mask[0], truth) >= 0.9, (seed, result.mask[0].view(*grid))


@pytest.mark.parametrize("rule", ["std", "mean"])
def test_sign_fix_makes_the_mask_independent_of_the_solver_sign(rule):
    tokens, truth = planted(1)
    _, affinity = patch_affinity(tokens[None])
    f, _ = fiedler_vector(affinity)
    plus, minus = foreground_mask(f, rule=rule), foreground_mask(-f, rule=rule)
    assert torch.equal(plus.mask, minus.mask)
    assert torch.allclose(plus.fiedler, minus.fiedler)
    assert plus.flipped.item() != minus.flipped.item()  # exactly one of the two was flipped
    assert torch.equal(plus.seed, minus.seed)
    assert iou(plus.mask[0], truth) >= 0.9
    assert plus.fiedler[0, plus.seed[0]] > 0 and plus.mask[0, plus.seed[0]]


@pytest.mark.parametrize("rule", ["std", "mean"])
def test_ncut_is_equivariant_to_patch_order_and_invariant_to_token_sign(rule):
    tokens, truth = planted(2)
    base = normalized_cut(tokens[None], threshold_rule=rule).mask[0]
    assert iou(base, truth) >= 0.9
    assert torch.equal(normalized_cut(-tokens[None], threshold_rule=rule).mask[0], base)  # S = P P^T is unchanged
    for seed in range(4):
        perm = torch.randperm(tokens.shape[0], generator=torch.Generator().manual_seed(seed))
        permuted = normalized_cut(tokens[perm][None], threshold_rule=rule).mask[0]
        assert torch.equal(permuted, base[perm])


def test_mask_is_never_empty_and_always_holds_the_seed():
    tokens = torch.randn(32, 49, WIDTH, generator=torch.Generator().manual_seed(0))
    for rule in ("std", "mean"):
        result = normalized_cut(tokens, threshold_rule=rule)
        assert (result.mask.sum(dim=1) >= 1).all()
        assert result.mask.gather(1, result.seed[:, None]).all()
        assert torch.equal(result.seed, result.fiedler.abs().argmax(dim=1))
        assert (result.fiedler.gather(1, result.seed[:, None]) > 0).all()
    # all |f| equal: the unbiased std exceeds every entry, so only the seed keeps the mask non-empty
    tie = foreground_mask(torch.tensor([[0.5, -0.5, 0.5, -0.5]]), rule="std")
    assert tie.mask.sum() == 1 and tie.mask[0, tie.seed[0]]
    # identical tokens: a fully connected graph, degenerate eigenvalues; still a valid mask
    same = torch.ones(2, 49, WIDTH)
    result = normalized_cut(same)
    assert result.mask.any(dim=1).all() and torch.isfinite(result.fiedler).all()


def test_affinity_follows_the_threshold_rule():
    tokens = torch.randn(3, 20, 8, generator=torch.Generator().manual_seed(0)) * 0.3
    s, a = patch_affinity(tokens, edge_threshold=0.2, weak_edge=1e-6)
    expected_s = (tokens.double() @ tokens.double().transpose(1, 2))
    assert torch.allclose(s, expected_s, atol=1e-6)
    one, weak = torch.tensor(1.0, dtype=torch.float64), torch.tensor(1e-6, dtype=torch.float64)
    assert torch.equal(a, torch.where(s > 0.2, one, weak))
    assert torch.equal(a, a.transpose(1, 2))
    assert ((a == 1.0) | (a == 1e-6)).all() and (a == 1e-6).any() and (a == 1.0).any()
    s_cos, _ = patch_affinity(tokens * 10, normalize=True)
    assert torch.allclose(s_cos.diagonal(dim1=1, dim2=2), torch.ones(3, 20, dtype=torch.float64))


@pytest.mark.parametrize("problem", ["symmetric", "generalized"])
def test_fiedler_vector_solves_the_normalised_cut_eigenproblem(problem):
    tokens, _ = planted(3, noise=0.3)  # noisy: a less trivial graph
    _, a = patch_affinity(tokens[None])
    f, lam = fiedler_vector(a, problem=problem)
    a, f, lam = a[0], f[0], lam[0]
    degree = torch.diag(a.sum(1))
    d_inv_sqrt = torch.diag(a.sum(1).rsqrt())
    l_sym = d_inv_sqrt @ (degree - a) @ d_inv_sqrt
    eigenvalues = torch.linalg.eigvalsh(l_sym)
    assert torch.isclose(lam, eigenvalues[1], atol=1e-10) and eigenvalues[1] > eigenvalues[0] + 1e-9
    assert torch.isclose(f.norm(), torch.tensor(1.0, dtype=f.dtype))
    if problem == "symmetric":
        assert torch.allclose(l_sym @ f, lam * f, atol=1e-9)
        assert abs(torch.dot(f, a.sum(1).sqrt())) < 1e-9  # orthogonal to the trivial eigenvector
    else:
        assert torch.allclose((degree - a) @ f, lam * degree @ f, atol=1e-9)


# --- (2) attention is a distribution over patches + null -------------------------------------


@pytest.mark.parametrize("null_token", ["zero", "learned", "none"])
@pytest.mark.parametrize("query", ["ncut", "mean", "cls"])
def test_attention_is_a_distribution_over_patches_and_null(null_token, query):
    gen = torch.Generator().manual_seed(0)
    soap = SOAP(WIDTH, query=query, null_token=null_token)
    with torch.no_grad():  # away from identity, so the check is not about the init only
        for proj in (soap.query_proj, soap.key_proj, soap.value_proj):
            proj.weight.add_(0.1 * torch.randn(WIDTH, WIDTH, generator=gen))
    tokens = torch.randn(4, 49, WIDTH, generator=gen)
    out = soap(tokens, torch.randn(4, WIDTH, generator=gen))
    assert out.fg_token.shape == (4, WIDTH)
    assert out.patch_weights.shape == (4, 49) and out.null_weight.shape == (4,)
    assert (out.patch_weights >= 0).all() and (out.null_weight >= 0).all()
    total = out.patch_weights.sum(1) + out.null_weight
    assert torch.allclose(total, torch.ones(4), atol=1e-6)
    if null_token == "none":
        assert torch.equal(out.null_weight, torch.zeros(4))
    else:
        assert (out.null_weight > 0).all()
    assert (out.ncut is not None) == (query == "ncut")


def test_background_is_not_masked_but_gets_near_zero_weight_from_a_foreground_query():
    # SPEC: the attention runs over ALL N patches (+ null); the mask only builds the query.
    # With tokens of norm 8 (D = 64) the foreground logits are ~8 and the background ~0, so
    # the background weight is small, but not zero. Cosine affinity keeps the cut scale-free.
    tokens, truth = planted(4, scale=8.0, noise=0.02)
    soap = SOAP(WIDTH, normalize_affinity=True)
    out = soap(tokens[None])
    assert iou(out.ncut.mask[0], truth) >= 0.9
    weights = out.patch_weights[0]
    assert (weights[~truth] > 0).all()  # not masked out
    assert weights[~truth].sum() < 0.01 and out.null_weight[0] < 1e-3
    assert weights[truth].sum() > 0.99
    assert weights[truth].min() > weights[~truth].max()


# --- (3) identity initialisation: the output is what the formulas give by hand --------------


def test_projections_start_as_identity_without_bias():
    soap = SOAP(WIDTH)
    for name in ("query_proj", "key_proj", "value_proj"):
        layer = getattr(soap, name)
        assert layer.bias is None and torch.equal(layer.weight, torch.eye(WIDTH))
    assert {n for n, _ in soap.named_parameters()} == {"query_proj.weight", "key_proj.weight", "value_proj.weight"}
    assert soap.no_weight_decay() == {"query_proj.weight", "key_proj.weight", "value_proj.weight"}
    learned = SOAP(WIDTH, null_token="learned")
    assert torch.equal(learned.null_embedding, torch.zeros(WIDTH)) and "null_embedding" in learned.no_weight_decay()
    assert list(SOAP(WIDTH, pooling="mean").parameters()) == []


def _by_hand(tokens: torch.Tensor, query: torch.Tensor, null: bool):
    d = tokens.shape[-1]
    logits = [float(query @ tokens[i]) / math.sqrt(d) for i in range(tokens.shape[0])]
    exps = [math.exp(x) for x in logits]
    denom = sum(exps) + (1.0 if null else 0.0)  # the zero null token has logit 0 -> exp 1
    weights = torch.tensor([e / denom for e in exps], dtype=tokens.dtype)
    return (weights[:, None] * tokens).sum(0), weights, (1.0 / denom if null else 0.0)


@pytest.mark.parametrize("null_token", ["zero", "none"])
def test_output_at_init_matches_the_hand_computed_masked_mean_query(null_token):
    tokens, truth = planted(5, scale=2.0, noise=0.02)
    tokens = tokens.double()
    soap = SOAP(WIDTH, null_token=null_token).double()
    out = soap(tokens[None])
    assert torch.equal(out.ncut.mask[0], truth)
    q = tokens[truth].mean(0)
    fg, weights, null_weight = _by_hand(tokens, q, null=null_token == "zero")
    assert torch.allclose(out.query[0], q, atol=1e-12)
    assert torch.allclose(out.patch_weights[0].double(), weights, atol=1e-6)
    assert math.isclose(out.null_weight[0].item(), null_weight, abs_tol=1e-6)
    assert torch.allclose(out.fg_token[0], fg, atol=1e-6)


def test_query_and_pooling_ablations_match_their_formulas():
    tokens, truth = planted(6)
    tokens = tokens.double()
    cls = torch.randn(WIDTH, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = SOAP(WIDTH, query="mean").double()(tokens[None])
    assert out.ncut is None
    assert torch.allclose(out.fg_token[0], _by_hand(tokens, tokens.mean(0), True)[0], atol=1e-6)
    out = SOAP(WIDTH, query="cls").double()(tokens[None], cls[None])
    assert torch.allclose(out.query[0], cls) and torch.allclose(out.fg_token[0], _by_hand(tokens, cls, True)[0], atol=1e-6)
    out = SOAP(WIDTH, pooling="mean")(tokens[None])
    assert torch.allclose(out.fg_token[0], tokens.mean(0)) and out.query is None
    assert torch.allclose(out.patch_weights, torch.full((1, 49), 1 / 49, dtype=torch.float64))
    out = SOAP(WIDTH, pooling="ncut_mean")(tokens[None])
    assert torch.equal(out.ncut.mask[0], truth) and torch.allclose(out.fg_token[0], tokens[truth].mean(0))


def test_zero_null_token_only_rescales_fg_so_the_projected_token_is_unchanged():
    # A zero key/value adds exp(0) to the softmax denominator and nothing to the sum:
    # FG_null = (1 - alpha_null) FG_none, and normalise(FG @ proj) removes that factor.
    gen = torch.Generator().manual_seed(7)
    with_null, without = SOAP(WIDTH, null_token="zero"), SOAP(WIDTH, null_token="none")
    with torch.no_grad():
        for name in ("query_proj", "key_proj", "value_proj"):
            w = torch.eye(WIDTH) + 0.2 * torch.randn(WIDTH, WIDTH, generator=gen)
            getattr(with_null, name).weight.copy_(w)
            getattr(without, name).weight.copy_(w)
    tokens = torch.randn(3, 49, WIDTH, generator=gen)
    a, b = with_null(tokens), without(tokens)
    assert torch.allclose(a.fg_token, (1 - a.null_weight)[:, None] * b.fg_token, atol=1e-5)
    proj = torch.randn(WIDTH, 32, generator=gen)
    assert torch.allclose(F.normalize(a.fg_token @ proj, dim=-1), F.normalize(b.fg_token @ proj, dim=-1), atol=1e-5)


def test_token_fusion_matches_the_spec_formula():
    gen = torch.Generator().manual_seed(8)
    tokens, cls, proj = torch.randn(2, 49, WIDTH, generator=gen), torch.randn(2, WIDTH, generator=gen), torch.randn(WIDTH, 32, generator=gen)
    fusion = TokenFusion(SOAP(WIDTH))
    out = fusion(tokens, cls, proj)
    c = F.normalize(cls @ proj, dim=-1)
    f_hat = F.normalize(out.soap.fg_token @ proj, dim=-1)
    assert torch.allclose(out.cls_embedding, c, atol=1e-6) and torch.allclose(out.fg_embedding, f_hat, atol=1e-6)
    assert torch.allclose(out.mixed, 0.5 * c + 0.5 * f_hat, atol=1e-6)
    assert torch.allclose(out.fused, F.normalize(0.5 * c + 0.5 * f_hat, dim=-1), atol=1e-6)
    assert torch.allclose(out.fused.norm(dim=-1), torch.ones(2))
    assert torch.allclose(TokenFusion(SOAP(WIDTH), fusion_ratio=1.0)(tokens, cls, proj).fused, c, atol=1e-6)
    assert torch.allclose(TokenFusion(SOAP(WIDTH), fusion_ratio=0.0)(tokens, cls, proj).fused, f_hat, atol=1e-6)
    assert fusion.no_weight_decay() == {"soap.query_proj.weight", "soap.key_proj.weight", "soap.value_proj.weight"}


# --- (4) batched == per sample ----------------------------------------------------------------


@pytest.mark.parametrize("rule", ["std", "mean"])
def test_batched_result_equals_per_sample_results(rule):
    samples = [planted(s, noise=0.05 + 0.1 * s)[0] for s in range(3)]
    samples += list(torch.randn(2, 49, WIDTH, generator=torch.Generator().manual_seed(9)))
    batch = torch.stack(samples)
    soap = SOAP(WIDTH, threshold_rule=rule)
    with torch.no_grad():
        soap.key_proj.weight.add_(0.1 * torch.randn(WIDTH, WIDTH, generator=torch.Generator().manual_seed(10)))
    out = soap(batch)
    for i, sample in enumerate(samples):
        one = soap(sample[None])
        assert torch.equal(out.ncut.mask[i], one.ncut.mask[0])
        assert torch.allclose(out.ncut.fiedler[i], one.ncut.fiedler[0], atol=1e-9)
        assert torch.allclose(out.fg_token[i], one.fg_token[0], atol=1e-5)
        assert torch.allclose(out.patch_weights[i], one.patch_weights[0], atol=1e-6)
        assert torch.allclose(out.null_weight[i], one.null_weight[0], atol=1e-6)


# --- (5) gradients ------------------------------------------------------------------------------


def test_gradients_reach_the_projections_and_tokens_but_not_the_cut():
    tokens, _ = planted(11)
    tokens = tokens[None].repeat(2, 1, 1).requires_grad_(True)
    cls = torch.randn(2, WIDTH, requires_grad=True)
    proj = torch.randn(WIDTH, 32)  # frozen, as CLIP's projection is
    fusion = TokenFusion(SOAP(WIDTH, null_token="learned"))
    out = fusion(tokens, cls, proj)
    (out.mixed @ torch.randn(32, 5)).logsumexp(-1).sum().backward()
    for name, param in fusion.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name
    # the trainable LayerNorms upstream learn through the tokens (query, keys, values)
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0 and cls.grad.abs().sum() > 0
    ncut = out.soap.ncut
    for t in (ncut.similarity, ncut.affinity, ncut.fiedler, ncut.eigenvalue, ncut.threshold):
        assert not t.requires_grad  # the cut is a hard selection: no gradient through eigh
    assert proj.grad is None


def test_gradients_stay_finite_on_a_degenerate_graph():
    # identical tokens: every eigenvalue but one is repeated, where eigh's backward is inf/NaN
    tokens = torch.ones(2, 49, WIDTH, requires_grad=True)
    soap = SOAP(WIDTH)
    soap(tokens).fg_token.sum().backward()
    assert torch.isfinite(tokens.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in soap.parameters())


def test_cls_query_sends_gradient_to_cls_token():
    cls = torch.randn(2, WIDTH, requires_grad=True)
    SOAP(WIDTH, query="cls")(torch.randn(2, 49, WIDTH), cls).fg_token.pow(2).sum().backward()
    assert cls.grad is not None and cls.grad.abs().sum() > 0


# --- (6) bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,match",
    [((49, WIDTH), r"\[B, N, D\].*\(49, 64\)"), ((2, 7, 7, WIDTH), r"\(2, 7, 7, 64\)"), ((2, 49, 32), r"width 32.*\(2, 49, 32\)"), ((2, 1, WIDTH), r"\(2, 1, 64\)")],
)
def test_bad_patch_shapes_raise_value_error_naming_the_shape(shape, match):
    with pytest.raises(ValueError, match=match):
        SOAP(WIDTH)(torch.randn(*shape))


def test_other_bad_inputs_raise_clear_value_errors():
    tokens = torch.randn(2, 49, WIDTH)
    with pytest.raises(ValueError, match=r"cls_token.*\(2, 64\).*\(3, 64\)"):
        SOAP(WIDTH)(tokens, torch.randn(3, WIDTH))
    with pytest.raises(ValueError, match="query='cls' needs the \\[CLS\\] token"):
        SOAP(WIDTH, query="cls")(tokens)
    with pytest.raises(ValueError, match=r"floating-point.*torch.int64"):
        SOAP(WIDTH)(torch.ones(2, 49, WIDTH, dtype=torch.long))
    with pytest.raises(ValueError, match=r"proj.*\[D, E\].*\(32, 16\)"):
        TokenFusion(SOAP(WIDTH))(tokens, torch.randn(2, WIDTH), torch.randn(32, 16))
    with pytest.raises(ValueError, match=r"affinity.*\(2, 4, 5\)"):
        fiedler_vector(torch.ones(2, 4, 5))
    with pytest.raises(ValueError, match=r"fiedler.*\(5,\)"):
        foreground_mask(torch.ones(5))
    for kwargs in ({"query": "random"}, {"pooling": "max"}, {"null_token": "zeros"}, {"threshold_rule": "median"}, {"eigen_problem": "lanczos"}):
        with pytest.raises(ValueError, match="must be one of"):
            SOAP(WIDTH, **kwargs)
    with pytest.raises(ValueError, match="fusion_ratio"):
        TokenFusion(SOAP(WIDTH), fusion_ratio=1.5)


# --- dtypes and devices -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_any_float_dtype_gives_the_same_cut_and_returns_its_own_dtype(dtype):
    tokens, truth = planted(12)
    ref = SOAP(WIDTH)(tokens[None])
    out = SOAP(WIDTH)(tokens[None].to(dtype))
    assert out.fg_token.dtype == dtype
    assert out.ncut.fiedler.dtype == torch.float64  # solved in float64 whatever the input
    assert torch.equal(out.ncut.mask[0], truth) and torch.equal(out.ncut.mask, ref.ncut.mask)
    assert torch.allclose(out.fg_token.float(), ref.fg_token, atol=2e-2)
    f32 = SOAP(WIDTH, eig_dtype=torch.float32)(tokens[None].to(dtype))
    assert f32.ncut.fiedler.dtype == torch.float32 and torch.equal(f32.ncut.mask, ref.ncut.mask)


def test_cpu_autocast_keeps_the_cut_and_the_input_dtype():
    tokens = torch.stack([planted(s)[0] for s in range(3)])
    soap = SOAP(WIDTH)
    ref = soap(tokens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = soap(tokens)
    assert amp.fg_token.dtype == torch.float32 and amp.patch_weights.dtype == torch.float32
    assert torch.equal(amp.ncut.mask, ref.ncut.mask)
    assert torch.allclose(amp.fg_token, ref.fg_token, atol=5e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    tokens = torch.stack([planted(s)[0] for s in range(4)])
    soap = SOAP(WIDTH)
    ref = soap(tokens)
    out = soap.cuda()(tokens.cuda())
    assert out.fg_token.device.type == "cuda" and out.ncut.mask.device.type == "cuda"
    assert torch.equal(out.ncut.mask.cpu(), ref.ncut.mask)
    assert torch.allclose(out.fg_token.cpu(), ref.fg_token, atol=1e-4)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        amp = soap(tokens.cuda())
    assert torch.equal(amp.ncut.mask.cpu(), ref.ncut.mask)
    assert torch.allclose(amp.fg_token.float().cpu(), ref.fg_token, atol=5e-2)
