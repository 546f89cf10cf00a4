"""Row (h): image encoding on the timm-tower families (SigLIP ViT-B/16, EVA02 ViT-B/16):
clipadapt's explicit forward (embedding, and MHAdapter's tap tokens of block L-1 with
the embedding in the same pass) against open_clip `encode_image`, same batch, timed in
turn, with the agreement of the outputs. The timm towers run timm's own modules one by
one (no fused path as for CLIP's ViT), so the figure to expect is about 1x: the row
guards against the explicit forward costing more than open_clip's."""

from __future__ import annotations

import torch

from bench_common import Row, cosine, interleaved_medians
from clipadapt.backbone import create_backbone

FAMILY_MODELS = ("ViT-B-16-SigLIP", "EVA02-B-16")
QUICK_MODELS = ("clipadapt-micro-map", "clipadapt-micro-eva")
TARGET = 0.95  # no slower than open_clip, within timing noise


def run(ctx) -> list[Row]:
    rows = []
    for name in QUICK_MODELS if ctx.quick else FAMILY_MODELS:
        backbone = create_backbone(name, None)
        images = torch.randn(ctx.batch, 3, backbone.image_size, backbone.image_size)
        tap = backbone.num_blocks - 1

        def plain():
            with torch.no_grad():
                return backbone.model.encode_image(images)

        def ours(tap_block=None):
            with torch.inference_mode():
                return backbone.forward_features(images, tap_block).embedding

        reference = plain()
        agreement = {"clipadapt": cosine(ours(), reference), "clipadapt_tap": cosine(ours(tap), reference)}
        max_diff = float((ours() - reference).abs().max())
        seconds = interleaved_medians({"open_clip": plain, "clipadapt": ours, "clipadapt_tap": lambda: ours(tap)},
                                      ctx.repeats)
        speed = {k: round(seconds["open_clip"] / v, 2) for k, v in seconds.items()}
        rows.append(Row(
            f"h-{backbone.family}", f"encode {name} ({backbone.family}) batch {ctx.batch}: clipadapt vs open_clip "
            "encode_image", speed["clipadapt"], "x", f">= {TARGET}x, same outputs",
            speed["clipadapt"] >= TARGET and max_diff < 1e-4, ctx.command("h"),
            f"max abs diff {max_diff:.1e}, cos {agreement['clipadapt']:.6f}; with tap {tap} (MHAdapter) "
            f"{speed['clipadapt_tap']}x",
            {"model": name, "batch": ctx.batch, "repeats": ctx.repeats, "seconds": seconds, "speedup": speed,
             "max_abs_diff": max_diff}))
    return rows
