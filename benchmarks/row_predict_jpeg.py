"""Row (d): `predict` end to end on real-size JPEGs (2048x1024, as street views are) vs
the backbone alone on tensors already in memory, same images, same batch.

predict decodes JPEGs in draft mode (at 1/2 scale for 2048x1024 -> 224 px: never below
twice the input size) in DataLoader workers, so decoding overlaps the model's compute;
the full-decode variant and the agreement of the two are printed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_common import Row, timed_with_matmul_rate, tower_gemm
from clipadapt.backbone import create_backbone
from clipadapt.data.images import load_image
from clipadapt.methods import build_method
from clipadapt.predict import predict_images
from clipadapt.predict.decode import open_at_size
from feature_store_vs_end_to_end import render_images
from row_encode import image_flops

TARGET = 0.9


def decode_ms(paths: list[Path], size: int) -> dict:
    """Mean milliseconds to decode one image: draft mode vs every pixel (one process)."""
    out = {}
    for name, fn in (("draft", lambda p: open_at_size(p, size)), ("full", load_image)):
        start = time.perf_counter()
        for p in paths:
            fn(p)
        out[name] = round(1000 * (time.perf_counter() - start) / len(paths), 1)
    return out


def run(ctx) -> list[Row]:
    """Measure (d) with CLIP-MHAdapter (weather) on ctx's model."""
    # one decoding worker: draft decoding costs ~7 ms of the ~450 ms an image takes here, and
    # on 2 cores a second worker only takes CPU from the model (measured: 0.93 vs 0.97)
    n, frame, workers = (4, (128, 64), 1) if ctx.quick else (32, (2048, 1024), 1)
    with tempfile.TemporaryDirectory() as tmp:
        images = render_images(Path(tmp), n, frame=frame)
        backbone = create_backbone(ctx.model, None)
        method = build_method("mhadapter", backbone, images.task, {}).eval()
        tensors = torch.randn(n, 3, backbone.image_size, backbone.image_size)
        tap = method.needs().tap_block
        device = torch.device("cpu")

        def backbone_only():
            with torch.inference_mode():
                for chunk in tensors.split(ctx.batch):
                    backbone.forward_features(chunk, tap)

        def predict(decode: str):
            return lambda: predict_images(method, images.paths, device, batch_size=ctx.batch, num_workers=workers,
                                          progress=False, decode=decode)

        seconds, rate = timed_with_matmul_rate({"backbone_only": backbone_only, "predict": predict("draft"),
                                                "predict_full_decode": predict("full")}, min(ctx.repeats, 3),
                                               tower_gemm(backbone, ctx.batch))
        draft, full = predict("draft")(), predict("full")()
        decoding = decode_ms(images.paths, backbone.image_size)
    probs = [c for c in draft.columns if ":p(" in c]
    agreement = {"max_abs_probability_difference": round(float(np.abs(draft[probs].to_numpy() - full[probs].to_numpy()).max()), 4),
                 "same_class_fraction": round(float((draft["weather"] == full["weather"]).mean()), 3)}
    figure = round(seconds["backbone_only"] / seconds["predict"], 3)
    flops = ctx.flops_per_image.get(ctx.model) or image_flops(backbone)
    share = n * flops / seconds["predict"] / 1e9 / rate
    full_ratio = round(seconds["backbone_only"] / seconds["predict_full_decode"], 3)
    details = {"images": n, "jpeg": list(frame), "batch": ctx.batch, "num_workers": workers,
               "seconds": {k: round(v, 2) for k, v in seconds.items()}, "decode_ms_per_image": decoding,
               "draft_vs_full": agreement, "full_decode_ratio": full_ratio, "matmul_fraction_predict": round(share, 3)}
    note = (f"full decode {full_ratio}; decode {decoding['draft']} ms (draft) vs {decoding['full']} ms (full) per image; "
            f"draft vs full: same class {agreement['same_class_fraction']:.0%}, "
            f"max |dp| {agreement['max_abs_probability_difference']}; predict reaches {share:.2f} of the matmul rate")
    return [Row("d", f"predict {n} JPEGs {frame[0]}x{frame[1]} ({ctx.model}) vs backbone-only throughput", figure, "of backbone-only",
                f">= {TARGET}", figure >= TARGET, ctx.command("d"), note, details)]
