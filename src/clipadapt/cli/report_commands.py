"""`clipadapt report` and `clipadapt explain`, as plain functions with typer parameters.

cli/main.py registers them (`app.command("report")(report_command)`); they import
main's error handling at call time, because main imports this module at load time.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def report_command(
    run_dir: Path = typer.Argument(..., help="A run folder written by `clipadapt train`."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file to write (default RUN_DIR/report.html)."),
    gallery: int = typer.Option(24, min=0, help="Test images shown per attribute, mistakes first (0 = no gallery)."),
):
    """Write one self-contained HTML report of a run: metrics, per-class accuracy, confusion
    matrices, curves, the run card and a gallery of test images (with attention maps for
    mhadapter). It opens offline: images and styles are inside the file."""
    from clipadapt.cli.common import RUN_FOLDER, out_console, quiet_libraries, require_path, run_safely

    def go():
        quiet_libraries()
        require_path(run_dir, RUN_FOLDER)
        from clipadapt.report import write_report  # torch: only once RUN_DIR is there

        path = write_report(run_dir, out, gallery=gallery)
        out_console.print(f"wrote {path}")

    run_safely(go)


def explain_command(
    images: List[str] = typer.Argument(..., help="Image files, folders (searched recursively), glob patterns or manifests."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A run folder of a mhadapter, promptpar or microclip run."),
    out: Path = typer.Option(Path("explain"), "--out", "-o", help="Folder for the attention PNGs."),
    per_head: bool = typer.Option(True, "--per-head/--no-per-head", help="mhadapter: also write one overlay per attention head."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:1 ..."),
):
    """Where the model looked, overlaid on each image as the model saw it. mhadapter: the
    attention each patch receives (Figure 3 of the paper), <image>_<attribute>_mean.png and
    _head<k>.png; promptpar: each part token's attention over its strip, <image>_part<g>.png;
    microclip: SOAP attention and the Normalised-Cut foreground mask, <image>_soap.png and
    _mask.png. Every image also gets <image>_panel.png with the predictions."""
    from clipadapt.cli.common import RUN_FOLDER, out_console, quiet_libraries, require_path, run_safely
    from clipadapt.data.inputs import collect_images

    def go():
        quiet_libraries()
        # the inputs are checked before torch is imported: a wrong path is answered at once
        require_path(checkpoint, RUN_FOLDER)
        paths = [p for spec in images for p in collect_images(spec)]
        from clipadapt.engine.devices import resolve_device
        from clipadapt.report import explain_images

        written = explain_images(checkpoint, paths, out, per_head=per_head, device=resolve_device(device))
        out_console.print(f"wrote {len(written)} files for {len(paths)} images to {out}")

    run_safely(go)
