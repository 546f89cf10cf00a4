"""`clipadapt adapt`: label-free adaptation with microCLIP (SPEC 3), as a plain function with
typer parameters.

cli/main.py registers it (`app.command("adapt")(adapt_command)`); it imports main's error
handling at call time, because main imports this module at load time.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer


def adapt_command(
    config: Path = typer.Argument(..., help="YAML run config (data: folder or synthetic-finegrained; method: microclip)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write."),
    set_: List[str] = typer.Option([], "--set", help="Override a setting, e.g. --set train.epochs=5 (repeatable)."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Adapt CLIP to K classes WITHOUT labels (microCLIP): self-train the image encoder's
    LayerNorms, the SOAP pooling and a learnable head on pseudo-labels from class
    descriptions, then evaluate on the test split next to zero-shot CLIP. Training labels,
    if the data has them, only score the pseudo-labels in history.json."""
    from rich.table import Table

    from clipadapt.cli.main import _quiet_libraries, out_console, percent, run_safely
    from clipadapt.config import load_config
    from clipadapt.engine.selftrain import COMPARISON_ROWS, adapt_run

    def go():
        _quiet_libraries()
        cfg = load_config(config, set_)
        outcome = adapt_run(cfg, out, progress=not quiet, config_dir=Path(config).expanduser().resolve().parent)
        if outcome.history:
            last = outcome.history[-1]
            acc = last.get("pseudo_label_accuracy")
            out_console.print(
                f"last epoch: pseudo-label accuracy {percent(acc)} (hidden train labels), class-histogram entropy "
                f"{last['pseudo_label_entropy_normalised']:.3f} of the maximum")
        if not outcome.comparison:
            out_console.print("(no test split: nothing evaluated)")
        else:
            table = Table(title="test (no training labels used)")
            table.add_column("model")
            table.add_column("accuracy", justify="right")
            table.add_column("macro-F1", justify="right")
            for key, label in COMPARISON_ROWS.items():
                if key in outcome.comparison:
                    row = outcome.comparison[key]
                    table.add_row(label, percent(row["accuracy"]), percent(row["macro_f1"]))
            out_console.print(table)
        out_console.print(f"run folder: {outcome.run_dir}")

    run_safely(go)
