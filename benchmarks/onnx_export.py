"""ONNX export (issue 21): onnxruntime fp32 and int8 against clipadapt's torch fp32 predict.

CLIP-MHAdapter (weather) on a full-size ViT-B/16 with random weights (compute is what
trained weights cost), `n` street-view JPEGs of 2048 x 1024 decoded the same way (draft
mode) by both paths; all three timed in one run, alternating, so the ratios share the
machine's load. Also: the agreement of each ONNX file with torch on every image (largest
probability difference, same predicted class, cosine of the probability vectors) and
the files' sizes.

    .venv/bin/python benchmarks/onnx_export.py            # ViT-B-16, 32 JPEGs, writes results/onnx_export.json
    .venv/bin/python benchmarks/onnx_export.py --quick    # micro CLIP, 4 small JPEGs, prints only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import quiet  # noqa: E402
from feature_store_vs_end_to_end import render_images  # noqa: E402

from clipadapt.backbone import create_backbone  # noqa: E402
from clipadapt.engine.checkpoint import build_card, write_checkpoint  # noqa: E402
from clipadapt.export import export_method  # noqa: E402
from clipadapt.methods import build_method  # noqa: E402
from clipadapt.predict import predict_images  # noqa: E402
from clipadapt.runtime import OnnxModel, predict_onnx  # noqa: E402

RESULT = Path(__file__).parent / "results" / "onnx_export.json"


def agreement(reference, table) -> dict:
    columns = [c for c in reference.columns if ":p(" in c]
    a, b = reference[columns].to_numpy(float), table[columns].to_numpy(float)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"max_abs_probability_difference": float(np.abs(a - b).max()),
            "same_class_fraction": float((reference["weather"] == table["weather"]).mean()),
            "probability_cosine_min": float(cos.min())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="micro CLIP and 4 small JPEGs (a smoke run)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    quiet()
    model_name, n, frame = ("clipadapt-micro", 4, (128, 64)) if args.quick else ("ViT-B-16", args.images, (2048, 1024))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = render_images(tmp, n, frame=frame)
        backbone = create_backbone(model_name, None)
        method = build_method("mhadapter", backbone, images.task, {}).eval()
        run = tmp / "run"
        card = build_card(method, seed=0)
        write_checkpoint(run, method, card)
        started = time.perf_counter()
        fp32 = export_method(method, card, run, tmp / "fp32.onnx")
        export_s = time.perf_counter() - started
        started = time.perf_counter()
        int8 = export_method(method, card, run, tmp / "int8.onnx", int8=True, check_images=images.paths,
                             batch_size=args.batch)
        int8_s = time.perf_counter() - started
        sessions = {"onnx_fp32": OnnxModel(fp32.path), "onnx_int8": OnnxModel(int8.path)}
        jobs = {"torch_fp32": lambda: predict_images(method, images.paths, torch.device("cpu"), batch_size=args.batch,
                                                     num_workers=1, progress=False),
                **{name: (lambda m=m: predict_onnx(m, images.paths, batch_size=args.batch))
                   for name, m in sessions.items()}}
        for job in jobs.values():  # warm-up: first-call allocations, oneDNN / onnxruntime kernel choice
            job()
        seconds = {name: [] for name in jobs}
        tables = {}
        for _ in range(args.repeats):  # alternating, so every path sees the same load
            for name, job in jobs.items():
                start = time.perf_counter()
                tables[name] = job()
                seconds[name].append(time.perf_counter() - start)
        best = {name: min(s) for name, s in seconds.items()}
        result = {
            "benchmark": "onnx_export", "model": model_name, "method": "mhadapter (weather, random weights)",
            "images": n, "jpeg": list(frame), "batch": args.batch, "repeats": args.repeats,
            "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                        "load_average_1min": round(os.getloadavg()[0], 2)},
            "seconds_best": {k: round(v, 2) for k, v in best.items()},
            "images_per_second": {k: round(n / v, 2) for k, v in best.items()},
            "speed_vs_torch_fp32": {k: round(best["torch_fp32"] / v, 3) for k, v in best.items() if k != "torch_fp32"},
            "agreement_with_torch_fp32": {k: agreement(tables["torch_fp32"], tables[k]) for k in sessions},
            "int8_agreement_printed_by_export": int8.agreement.__dict__ if int8.agreement else None,
            "file_mb": {"onnx_fp32": round(fp32.size_bytes / 1e6, 1), "onnx_int8": round(int8.size_bytes / 1e6, 1)},
            "export_seconds": {"fp32": round(export_s, 1), "int8_with_agreement": round(int8_s, 1)},
            "versions": {"torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__,
                         "onnx": __import__("onnx").__version__},
            "date": time.strftime("%Y-%m-%d"),
        }
    print(json.dumps(result, indent=2))
    if not args.quick:
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
