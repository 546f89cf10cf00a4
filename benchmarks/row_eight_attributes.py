"""Row (c): predictions for all eight GSS attributes from one backbone pass (one model,
eight heads) vs eight single-attribute models (eight backbone passes), same images."""

from __future__ import annotations

import torch

from bench_common import Row, count_flops, timed_with_matmul_rate, tower_gemm
from clipadapt.backbone import create_backbone
from clipadapt.backbone import fast as fast_path
from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
from clipadapt.methods import build_method
from clipadapt.task import TaskSpec

TARGET = 6.0


def run(ctx) -> list[Row]:
    """Measure (c) with CLIP-MHAdapter heads on ctx's model and batch."""
    backbone = create_backbone(ctx.model, None)
    attributes = [gss_attribute(name, GSS_SCHEMA[name][1]) for name in GSS_SCHEMA]
    one = build_method("mhadapter", backbone, TaskSpec(tuple(attributes)), {}).eval()
    singles = [build_method("mhadapter", backbone, TaskSpec((a,)), {}).eval() for a in attributes]
    images = torch.randn(ctx.batch, 3, backbone.image_size, backbone.image_size)

    def one_pass():
        with torch.inference_mode():
            return one.forward_images(images)

    def eight_models():
        with torch.inference_mode():
            return [m.forward_images(images) for m in singles]

    seconds, rate = timed_with_matmul_rate({"one_pass": one_pass, "eight_models": eight_models}, min(ctx.repeats, 3),
                                           tower_gemm(backbone, ctx.batch))
    heads = len(one_pass())
    figure = round(seconds["eight_models"] / seconds["one_pass"], 2)
    b, h = flops_per_image(backbone, one)
    bound = heads * (b + h) / (b + heads * h)
    share = ctx.batch * (b + heads * h) / seconds["one_pass"] / 1e9 / rate
    note = (f"FLOP ceiling {bound:.2f}x (8 backbone passes + 8 heads over 1 pass + 8 heads); "
            f"one pass reaches {share:.2f} of the matmul rate")
    details = {"model": ctx.model, "batch": ctx.batch, "seconds": {k: round(v, 3) for k, v in seconds.items()},
               "flop_ceiling": round(bound, 2), "heads": heads, "matmul_fraction_one_pass": round(share, 3)}
    return [Row("c", f"8 GSS attributes ({ctx.model}, batch {ctx.batch}): one pass vs 8 single-attribute models",
                figure, "x", f">= {TARGET:g}x", figure >= TARGET, ctx.command("c"), note, details)]


def flops_per_image(backbone, method) -> tuple[float, float]:
    """(backbone FLOPs, one attribute head's FLOPs) per image, as the inference paths run them,
    counted on plain ops: the backbone's reference path, the heads' matmuls with oneDNN off
    (the counter cannot see its ops), plus their fused attention (QK^T and AV), which the
    counter cannot see either: 4 T^2 E."""
    images = torch.randn(1, 3, backbone.image_size, backbone.image_size)
    fast, backbone.fast = backbone.fast, False
    onednn, fast_path._ONEDNN_OK = fast_path._ONEDNN_OK, False
    try:
        with torch.no_grad():
            feats = backbone.forward_features(images, method.needs().tap_block)
            b = count_flops(lambda: backbone.forward_features(images, method.needs().tap_block))
            h = count_flops(lambda: method(feats)) / len(method.task)
    finally:
        backbone.fast, fast_path._ONEDNN_OK = fast, onednn
    return b, h + 4 * feats.tokens.shape[1] ** 2 * backbone.embed_dim
