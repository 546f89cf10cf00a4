"""`clipadapt export`, as a plain function with typer parameters (cli/main.py registers it)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer


class ExportFormat(str, Enum):
    onnx = "onnx"


def export_command(
    run_dir: Path = typer.Argument(..., help="A run folder written by `clipadapt train` (or adapt / import-*)."),
    format: ExportFormat = typer.Option(ExportFormat.onnx, "--format", help="onnx: one file, images in, every "
                                        "attribute's probabilities out; preprocessing and classes in its metadata."),
    out: Path = typer.Option(Path("model.onnx"), "--out", "-o", help="The .onnx file to write."),
    int8: bool = typer.Option(False, "--int8", help="Quantise the weights to int8 (onnxruntime dynamic "
                              "quantisation; lossy, opt-in): its agreement with fp32 is measured and printed."),
    images: List[str] = typer.Option([], "--images", help="Images for the int8 agreement check (folder, files, glob "
                                     "or manifest; default: the run's test images)."),
    batch_size: int = typer.Option(32, min=1, help="Images in the int8 agreement check."),
):
    """Export a trained run for inference without clipadapt's torch code: an ONNX file that
    `clipadapt predict --model` or `python -m clipadapt.runtime` (no torch) runs with
    onnxruntime (docs/export.md)."""
    from clipadapt.cli.common import RUN_FOLDER, out_console, quiet_libraries, require_path, run_safely
    from clipadapt.data.inputs import collect_images

    def go():
        quiet_libraries()
        require_path(run_dir, RUN_FOLDER)
        paths: Optional[list] = [p for spec in images for p in collect_images(spec)] or None
        from clipadapt.export import export_run  # torch: only once the inputs are there

        result = export_run(run_dir, out, int8=int8, images=paths, batch_size=batch_size)
        for note in result.notes:
            out_console.print(note, highlight=False, soft_wrap=True)
        if result.agreement is not None:
            out_console.print(result.agreement.describe(), highlight=False, soft_wrap=True)
        meta = result.metadata
        out_console.print(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, {meta['precision']}): "
                          f"{meta['method']}, {len(meta['attributes'])} attribute(s), input [B, 3, "
                          f"{meta['preprocessing']['image_size']}, {meta['preprocessing']['image_size']}]",
                          highlight=False, soft_wrap=True)

    run_safely(go)
