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
    true_labels: bool = typer.Option(
        False, "--true-labels",
        help="Diagnostic upper bound, NOT label-free: the same recipe and trainable parts, trained on the "
             "training labels instead of pseudo-labels (every training image needs one). What it reaches is the "
             "most self-training can reach; near zero-shot means the backbone's features leave no headroom."),
):
    """Adapt CLIP to K classes WITHOUT labels (microCLIP): self-train the image encoder's
    LayerNorms, the SOAP pooling and a learnable head on pseudo-labels from class
    descriptions, then evaluate on the test split next to zero-shot CLIP. Training labels,
    if the data has them, only score the pseudo-labels in history.json (unless
    --true-labels asks for the upper bound that learns from them)."""
    from rich.table import Table

    from clipadapt.cli.common import quiet_libraries, out_console, percent, run_safely
    from clipadapt.config import load_config

    def go():
        quiet_libraries()
        cfg = load_config(config, set_)
        from clipadapt.workflow import adapt_run  # torch: only once the config is good
        outcome = adapt_run(cfg, out, progress=not quiet, config_dir=Path(config).expanduser().resolve().parent,
                            true_labels=true_labels)
        if outcome.history:
            last = outcome.history[-1]
            acc = last.get("pseudo_label_accuracy")
            out_console.print(
                f"last epoch: pseudo-label accuracy {percent(acc)} (hidden train labels), class-histogram entropy "
                f"{last['pseudo_label_entropy_normalised']:.3f} of the maximum")
        if not outcome.comparison:
            out_console.print("(no test split: nothing evaluated)")
        else:
            table = Table(title="test (TRUE training labels used: the upper bound, not label-free)" if true_labels
                          else "test (no training labels used)")
            table.add_column("model")
            table.add_column("accuracy", justify="right")
            table.add_column("macro-F1", justify="right")
            for key, label in outcome.rows.items():  # the method's own rows and labels
                if key in outcome.comparison:
                    row = outcome.comparison[key]
                    table.add_row(label, percent(row["accuracy"]), percent(row["macro_f1"]))
            out_console.print(table)
        out_console.print(f"run folder: {outcome.run_dir}")

    run_safely(go)
