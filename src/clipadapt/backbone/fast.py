"""The frozen image pass with less work: same numbers as the block-by-block forward.

`encode` runs open_clip's residual blocks with their own weights, but
- attention goes through F.scaled_dot_product_attention (one fused kernel) fed by one
  QKV projection, instead of nn.MultiheadAttention's generic path;
- on CPU without autograd, the linear layers run as oneDNN matmuls with their
  epilogues fused (GELU into the first MLP layer, the residual add into the output
  projections): on AVX-512 CPUs oneDNN's fp32 GEMM is faster than the BLAS one behind
  F.linear, and the fused epilogues save a pass over the activations each;
- when only the CLIP embedding is needed from the last block, that block computes keys
  and values for every token but queries, attention output and MLP for [CLS] alone
  (the embedding reads nothing else: ~10/12 of the block's work is skipped);
- with `embedding=False`, blocks after the deepest tapped one are not run at all.
Outputs equal the explicit forward within fp32 rounding (tests/test_backbone_fast.py).

`Int8Tower` and `encode_bf16` are the opt-in lossy paths: the same pass with every
block's linear layers int8 dynamically quantised (CPU), or in bfloat16; their agreement
with fp32 is measured, not assumed (benchmarks/run_all.py prints it).
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def supports_fast_path(visual: nn.Module) -> bool:
    """True when every block is open_clip's plain residual block (nn.MultiheadAttention with
    packed in-projection, batch-first, no cross-attention), which is what `encode` reimplements."""
    for blk in visual.transformer.resblocks:
        attn = getattr(blk, "attn", None)
        if (not isinstance(attn, nn.MultiheadAttention) or attn.in_proj_weight is None or not attn.batch_first
                or hasattr(blk, "ln_1_kv") or not hasattr(blk, "mlp") or hasattr(blk, "ln_attn")):
            return False
    return True


class _LiveProjections:
    """The linear layers of one block, read from its live fp32 parameters (no copies, so
    `.to(device)` and weight loading on the backbone apply here too)."""

    def __init__(self, blk: nn.Module):
        self.blk = blk
        self.width = blk.attn.embed_dim

    def linear(self, h, weight, bias):
        return F.linear(h, weight, bias)

    def qkv(self, h):
        attn = self.blk.attn
        return self.linear(h, attn.in_proj_weight, attn.in_proj_bias)

    def q(self, h):
        w, b = self.blk.attn.in_proj_weight, self.blk.attn.in_proj_bias
        return self.linear(h, w[: self.width], b[: self.width] if b is not None else None)

    def kv(self, h):
        w, b = self.blk.attn.in_proj_weight, self.blk.attn.in_proj_bias
        return self.linear(h, w[self.width:], b[self.width:] if b is not None else None)

    def attention_out(self, o, x):
        """x + ls_1(out_proj(o))."""
        return x + self.blk.ls_1(self.blk.attn.out_proj(o))

    def mlp_out(self, h, x):
        """x + ls_2(mlp(h)), h = ln_2(x)."""
        return x + self.blk.ls_2(self.blk.mlp(h))


class _OneDnnProjections(_LiveProjections):
    """The same layers as oneDNN matmuls with fused epilogues (CPU, fp32, no autograd)."""

    def linear(self, h, weight, bias):
        return torch.ops.mkldnn._linear_pointwise(h, weight, bias, "none", [], "")

    def attention_out(self, o, x):
        if not isinstance(self.blk.ls_1, nn.Identity):  # a layer scale sits between matmul and add
            return super().attention_out(o, x)
        out = self.blk.attn.out_proj
        return torch.ops.mkldnn._linear_pointwise.binary(o, x, out.weight, out.bias, "add")

    def mlp_out(self, h, x):
        mlp = self.blk.mlp
        if not isinstance(self.blk.ls_2, nn.Identity):
            return super().mlp_out(h, x)
        if _is_exact_gelu(mlp.gelu):
            h = torch.ops.mkldnn._linear_pointwise(h, mlp.c_fc.weight, mlp.c_fc.bias, "gelu", [], "none")
        else:  # QuickGELU (OpenAI weights) and others: matmul fused, activation apart
            h = mlp.gelu(self.linear(h, mlp.c_fc.weight, mlp.c_fc.bias))
        return torch.ops.mkldnn._linear_pointwise.binary(h, x, mlp.c_proj.weight, mlp.c_proj.bias, "add")


def _is_exact_gelu(act: nn.Module) -> bool:
    return type(act) is nn.GELU and act.approximate == "none"


_ONEDNN_OK: bool | None = None  # this build's oneDNN ops checked (onednn_available), once
# Within `portable_ops()`: the calling thread's passes use F.linear, never the oneDNN ops
_PORTABLE: ContextVar[bool] = ContextVar("clipadapt_portable_ops", default=False)


@contextmanager
def portable_ops():
    """Within (this thread / task only): every linear layer runs as F.linear, the op ONNX knows,
    never the fused oneDNN ones (same numbers: tests/test_backbone_fast.py). The ONNX export
    traces inside it; other threads keep the fast ops."""
    token = _PORTABLE.set(True)
    try:
        yield
    finally:
        _PORTABLE.reset(token)


def _use_onednn(x: torch.Tensor) -> bool:
    """The fused oneDNN ops serve `x`: CPU, fp32, autograd off, a build that runs them
    correctly, and not inside `portable_ops()`."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not _PORTABLE.get() and onednn_available())


def onednn_available() -> bool:
    """Whether this torch build runs the fused oneDNN linear ops correctly (checked once,
    against F.linear, on a small input: the ops are internal to torch, so trust is earned)."""
    global _ONEDNN_OK
    if _ONEDNN_OK is None:
        try:
            with torch.inference_mode():
                g = torch.Generator().manual_seed(0)
                x, w, b = (torch.randn(s, generator=g) for s in ((5, 16), (8, 16), (8,)))
                r = torch.randn(5, 8, generator=g)
                fused = torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none")
                rectified = torch.ops.mkldnn._linear_pointwise(x, w, b, "relu", [], "")
                added = torch.ops.mkldnn._linear_pointwise.binary(x, r, w, b, "add")
                _ONEDNN_OK = (torch.allclose(fused, F.gelu(F.linear(x, w, b)), atol=1e-4)
                              and torch.allclose(rectified, F.relu(F.linear(x, w, b)), atol=1e-4)
                              and torch.allclose(added, r + F.linear(x, w, b), atol=1e-4))
        except Exception:  # op missing or refused in this build: the portable path serves
            _ONEDNN_OK = False
    return _ONEDNN_OK


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           activation: str | None = None) -> torch.Tensor:
    """activation(x @ weight.T + bias), activation None | "relu" | "gelu" (exact): one fused
    oneDNN call on CPU in fp32 without autograd, F.linear and the activation elsewhere."""
    if _use_onednn(x):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation or "none", [],
                                                  "none" if activation == "gelu" else "")
    out = F.linear(x, weight, bias)
    if activation == "relu":
        return F.relu(out)
    return F.gelu(out) if activation == "gelu" else out


def default_projections(blocks, x: torch.Tensor) -> list:
    """oneDNN projections where they apply (CPU, fp32, autograd off, not in `portable_ops()`),
    live F.linear ones elsewhere."""
    kind = _OneDnnProjections if _use_onednn(x) else _LiveProjections
    return [kind(b) for b in blocks]


def residual_block(blk: nn.Module, proj, x: torch.Tensor, cls_only: bool = False) -> torch.Tensor:
    """One pre-norm residual block on [B, T, D] tokens with fused attention; `cls_only`
    returns [B, 1, D], the [CLS] output alone (keys and values still see every token)."""
    batch, tokens, width = x.shape
    heads = blk.attn.num_heads
    h = blk.ln_1(x)
    if cls_only:
        q = proj.q(h[:, :1]).view(batch, 1, heads, -1).transpose(1, 2)
        k, v = proj.kv(h).view(batch, tokens, 2, heads, -1).permute(2, 0, 3, 1, 4)
        x = x[:, :1]
    else:
        q, k, v = proj.qkv(h).view(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    o = F.scaled_dot_product_attention(q, k, v)
    x = proj.attention_out(o.transpose(1, 2).reshape(batch, x.shape[1], width), x)
    return proj.mlp_out(blk.ln_2(x), x)


def encode(backbone, images: torch.Tensor, tap_block: int | None, embedding: bool = True,
           projections: list | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(patch tokens after block `tap_block` [B, N, D] or None, CLIP embedding [B, E] or None).

    `projections[i]` supplies block i's linear layers (default: `default_projections`).
    """
    blocks = backbone.visual.transformer.resblocks
    last = len(blocks) if embedding else (tap_block or 0)
    x = backbone.embed(images)
    projections = projections or default_projections(blocks, x)
    tapped = None
    for i in range(last):
        x = residual_block(blocks[i], projections[i], x, cls_only=embedding and i == last - 1 and tap_block != last)
        if tap_block is not None and i + 1 == tap_block:
            tapped = x[:, 1:]
    return tapped, (backbone.pool(x) if embedding else None)


class _QuantisedProjections(nn.Module):
    """One block's linear layers as int8 dynamically quantised copies (CPU only)."""

    def __init__(self, blk: nn.Module):
        super().__init__()
        self.blk = [blk]  # a list: the block's modules are not this module's children
        attn, width = blk.attn, blk.attn.embed_dim
        weight, bias = attn.in_proj_weight.detach(), attn.in_proj_bias
        bias = bias.detach() if bias is not None else torch.zeros(3 * width)
        self.qkv = _linear(weight, bias)
        self.q = _linear(weight[:width], bias[:width])
        self.kv = _linear(weight[width:], bias[width:])
        self.out = _linear(attn.out_proj.weight.detach(), attn.out_proj.bias.detach())
        self.fc = copy.deepcopy(blk.mlp.c_fc)
        self.act = copy.deepcopy(blk.mlp.gelu)
        self.fc_out = copy.deepcopy(blk.mlp.c_proj)

    def attention_out(self, o, x):
        return x + self.blk[0].ls_1(self.out(o))

    def mlp_out(self, h, x):
        return x + self.blk[0].ls_2(self.fc_out(self.act(self.fc(h))))


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    layer.weight.data.copy_(weight)
    layer.bias.data.copy_(bias)
    return layer


class Int8Tower:
    """The fast pass with int8 dynamic quantisation of every linear layer (lossy, opt-in, CPU).

    >>> from clipadapt.backbone import create_backbone
    >>> bb = create_backbone("clipadapt-micro", None)
    >>> tokens, emb = Int8Tower(bb)(torch.randn(2, 3, 32, 32), tap_block=1)
    >>> tuple(emb.shape)
    (2, 32)
    """

    def __init__(self, backbone):
        self.backbone = backbone
        layers = nn.ModuleList(_QuantisedProjections(b) for b in backbone.visual.transformer.resblocks).cpu().eval()
        with warnings.catch_warnings():
            # torch.ao's eager quantisation is deprecated in favour of torchao, which this
            # project does not depend on; it still works and is what this opt-in path needs.
            warnings.simplefilter("ignore")
            self.projections = torch.ao.quantization.quantize_dynamic(layers, {nn.Linear}, dtype=torch.qint8)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, tap_block: int | None = None,
                 embedding: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return encode(self.backbone, images, tap_block, embedding, list(self.projections))


def encode_bf16(backbone, images: torch.Tensor, tap_block: int | None = None,
                embedding: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """`encode` in bfloat16 under autocast (lossy, opt-in): matmuls in bf16 where the CPU has
    AVX-512 BF16 (or on CUDA); outputs returned in fp32."""
    blocks = backbone.visual.transformer.resblocks
    with torch.autocast(images.device.type, dtype=torch.bfloat16):
        # the portable projections: F.linear follows autocast, the oneDNN fp32 ops would not
        tokens, emb = encode(backbone, images, tap_block, embedding, [_LiveProjections(b) for b in blocks])
    as_fp32 = lambda t: t.float() if t is not None else None  # noqa: E731
    return as_fp32(tokens), as_fp32(emb)


def compiled(fn: Callable) -> Callable:
    """`fn` through torch.compile (inductor, weights frozen as constants: this sets inductor's
    `freezing` for the whole process): an opt-in that pays only where the compile time
    (minutes on 2 CPU cores) is amortised."""
    import torch._inductor.config as inductor

    inductor.freezing = True
    return torch.compile(fn, dynamic=False)
