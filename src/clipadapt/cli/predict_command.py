"""`clipadapt predict`, as a plain function with typer parameters (cli/main.py registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from clipadapt.cli.common import RUN_FOLDER, out_console, require_path, run_safely, skip_by_default
from clipadapt.cli.engine_options import (
    ENGINE, RAY_ACTORS, RAY_ADDRESS, SHARD_SIZE, Decode, Engine, Precision, check_local, ray_options,
)
from clipadapt.data.policy import BadImagePolicy


def predict_command(
    inputs: List[str] = typer.Argument(..., help="Image folders, files, glob patterns or manifests (CSV/Parquet)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="A run folder written by `clipadapt train`."),
    model: Optional[Path] = typer.Option(None, "--model", help="Instead of --checkpoint: an .onnx file written by "
                                         "`clipadapt export`, run with onnxruntime (docs/export.md)."),
    out: Path = typer.Option(Path("predictions.csv"), "--out", "-o", help=".csv or .parquet (GeoParquet when the rows "
                             "carry lat and lon); with a track column also OUT-STEM.tracks.csv, one row per track."),
    keep: Optional[str] = typer.Option(None, "--keep", metavar="COL[,COL...]", help="Manifest columns to carry, "
                                       "right after path: names, 'all' or 'none' (default: uuid or id, a box's columns "
                                       "and track, and lat/lon as lat and lon, when the manifest has them)."),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="A CSV/Parquet of uuid, lat, lon (as GSS's "
                                            "metadata tables): coordinates for rows without them, matched by uuid "
                                            "(or the image file name's stem)."),
    batch_size: int = typer.Option(64, min=1, help="Images per forward pass."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:1 ..."),
    num_workers: int = typer.Option(0, min=0, help="Image-decoding worker processes (0: this one)."),
    threshold: Optional[float] = typer.Option(
        None, min=0.0, max=1.0, help="Multi-label runs: an attribute is present when p > threshold (default: the run's)."),
    on_bad_image: BadImagePolicy = skip_by_default("skip: an unusable image gets ok=false and is listed, with "
                                                    "the reason, in a CSV next to OUT; fail: it stops the job."),
    decode: Decode = typer.Option(Decode.draft, "--decode", help="draft: large JPEGs are decoded at reduced scale "
                                  "straight to about the model's input size (fast); full: every pixel is decoded first."),
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="fp32: exact. bf16 / int8: a faster, lossy "
                                        "frozen backbone pass (int8: CPU only); its agreement with fp32 on the first "
                                        "batch is measured and printed."),
    engine: Engine = ENGINE,
    ray_address: Optional[str] = RAY_ADDRESS,
    ray_actors: Optional[int] = RAY_ACTORS,
    shard_size: int = SHARD_SIZE,
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Predict every attribute of every image: one row per image with class, probabilities and
    their normalised entropy (multi-label runs: every attribute's probability and its 0/1
    decision), after the manifest's uuid and lat/lon."""
    from clipadapt.workflow.predict import PredictOptions, predict_run

    def go():
        require_path(checkpoint, RUN_FOLDER)
        if engine is Engine.local:
            check_local(ray_address, ray_actors)
        options = PredictOptions(batch_size=batch_size, num_workers=num_workers, threshold=threshold,
                                 on_bad_image=on_bad_image.value, decode=decode.value, precision=precision.value,
                                 device=device)
        outcome = predict_run(inputs, out, checkpoint=checkpoint, model=model, options=options,
                              ray=ray_options(ray_address, ray_actors) if engine is Engine.ray else None,
                              shard_size=shard_size, progress=not quiet, keep=keep, metadata=metadata)
        for line in outcome.lines:
            out_console.print(line, highlight=False, soft_wrap=True)

    run_safely(go)
