"""Rows (a) and (g): image encoding throughput of clipadapt's frozen pass against plain
open_clip `encode_image` (same batch, same threads, timed in turn), the agreement of
every contender with fp32 eager, and how much of the machine's matmul rate each reaches.
"""

from __future__ import annotations

import time

import torch

from bench_common import Row, cosine, count_flops, timed_with_matmul_rate, tower_gemm
from clipadapt.backbone import create_backbone
from clipadapt.backbone.fast import Int8Tower, compiled, encode_bf16

TARGET_SPEEDUP, TARGET_COSINE, TARGET_LOSSY, TARGET_FRACTION = 1.3, 0.999, 2.0, 0.8


def image_flops(backbone) -> int:
    """FLOPs of one image through the image tower (counted on open_clip's plain ops)."""
    images = torch.randn(1, 3, backbone.image_size, backbone.image_size)
    fast, backbone.fast = backbone.fast, False
    try:
        with torch.no_grad():
            return count_flops(lambda: backbone.model.encode_image(images))
    finally:
        backbone.fast = fast


def contenders(backbone, images: torch.Tensor, tap: int, with_compile: bool) -> dict:
    """name -> (callable returning the embedding, lossy?)."""
    model = backbone.model

    def plain():
        with torch.no_grad():
            return model.encode_image(images)

    def ours(tap_block=None):
        with torch.inference_mode():
            return backbone.forward_features(images, tap_block).embedding

    int8 = Int8Tower(backbone)

    def bf16():
        with torch.inference_mode():
            return encode_bf16(backbone, images)[1]

    out = {"open_clip": (plain, False), "clipadapt": (ours, False), "clipadapt_tap": (lambda: ours(tap), False),
           "int8": (lambda: int8(images)[1], True), "bf16": (bf16, True)}
    if with_compile:
        fn = compiled(lambda x: backbone.forward_features(x, None).embedding)

        def compiled_pass():
            with torch.inference_mode():
                return fn(images)

        out["compiled"] = (compiled_pass, False)
    return out


def run(ctx) -> list[Row]:
    """Measure (a) and (g) on ctx's model and batch."""
    backbone = create_backbone(ctx.model, None)
    images = torch.randn(ctx.batch, 3, backbone.image_size, backbone.image_size)
    tap = max(backbone.num_blocks - 1, 1)  # MHAdapter's tap: tokens of block L-1 and the embedding
    fns = contenders(backbone, images, tap, ctx.compile)
    with torch.no_grad():
        backbone.fast = False
        reference = backbone.forward_features(images, None).embedding  # fp32 eager, block by block
        backbone.fast = True
    compile_s = None
    if "compiled" in fns:
        start = time.perf_counter()
        fns["compiled"][0]()
        compile_s = round(time.perf_counter() - start, 1)
    agreement = {name: round(cosine(fn(), reference), 6) for name, (fn, _) in fns.items()}
    # the machine's matmul rate, timed in turn with the contenders (same load), on the shape
    # of the tower's largest layer
    seconds, rate = timed_with_matmul_rate({name: fn for name, (fn, _) in fns.items()}, ctx.repeats,
                                           tower_gemm(backbone, ctx.batch))
    flops = image_flops(backbone)
    per_s = {name: ctx.batch / t for name, t in seconds.items()}
    fraction = {name: round(per_s[name] * flops / 1e9 / rate, 3) for name in per_s}
    speed = {name: round(seconds["open_clip"] / t, 2) for name, t in seconds.items()}
    details = {"model": ctx.model, "batch": ctx.batch, "repeats": ctx.repeats, "tap_block": tap,
               "images_per_s": {k: round(v, 2) for k, v in per_s.items()}, "speedup": speed,
               "cosine_vs_fp32_eager": agreement, "matmul_fraction": fraction, "gflops_per_image": round(flops / 1e9, 2),
               "compile_s": compile_s, "matmul_gflops": round(rate, 1)}
    ctx.flops_per_image[ctx.model] = flops
    best_lossy = max((n for n, (_, lossy) in fns.items() if lossy), key=lambda n: speed[n])
    cmd = ctx.command("a")
    return [
        Row("a", f"encode {ctx.model} batch {ctx.batch}: clipadapt fp32 vs open_clip encode_image", speed["clipadapt"],
            "x", f">= {TARGET_SPEEDUP}x, cos >= {TARGET_COSINE}",
            speed["clipadapt"] >= TARGET_SPEEDUP and agreement["clipadapt"] >= TARGET_COSINE, cmd,
            f"cos {agreement['clipadapt']:.6f}; with tap {tap} (MHAdapter) {speed['clipadapt_tap']}x", details),
        Row("a-lossy", f"encode {ctx.model}: opt-in lossy {best_lossy} vs open_clip fp32", speed[best_lossy], "x",
            f">= {TARGET_LOSSY}x, agreement printed", speed[best_lossy] >= TARGET_LOSSY, cmd,
            f"int8 {speed['int8']}x cos {agreement['int8']:.4f}; bf16 {speed['bf16']}x cos {agreement['bf16']:.4f}"),
        Row("g", f"share of the measured fp32 matmul rate ({rate:.0f} GFLOP/s), {flops / 1e9:.1f} GFLOP/image",
            fraction["clipadapt"], "of peak", f">= {TARGET_FRACTION}", fraction["clipadapt"] >= TARGET_FRACTION,
            ctx.command("a,g"), f"open_clip reaches {fraction['open_clip']}"),
    ]
