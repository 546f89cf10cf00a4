"""The names of a run folder's files, defined once for every layer.

Ground floor: the engine (best checkpoint, resume state), the data layer (the skipped
images' list), the workflow's `RunFolder` and the readers (report, serve, export, bench)
all name a run's files through `RunFiles`, so a file can be renamed in one place. Which
code writes them is another matter: `engine.run_state.RunState` and its extension
`workflow.RunFolder` are the one writer.
"""

from __future__ import annotations


# what to pass instead of a run folder that is not there (data.inputs.missing_path's what, fix)
RUN_FOLDER = (", so is not a clipadapt run folder", "Pass the --out folder of a `clipadapt train` run.")


class RunFiles:
    """The file names of a run folder (and of its `eval/` results), as constants."""

    CONFIG = "config.yaml"  # the settings as the run resolved them
    CARD = "card.json"  # everything needed to rebuild the model (engine.card.RunCard)
    CHECKPOINT = "checkpoint.safetensors"  # the selected epoch's trained tensors
    RESUME_STATE = "resume.safetensors"  # tensors + the loop's position in its metadata: one atomic file
    RESUME_INFO = "resume.json"  # written by earlier versions; still removed when a run completes
    HISTORY = "history.json"
    METRICS = "metrics.json"
    PREDICTIONS = "predictions.csv"
    PER_ATTRIBUTE = "per_attribute.csv"  # multi-label runs: one row per attribute
    SKIPPED = "skipped_images.csv"  # images left out under data.on_bad_image=skip, with why
    SHOTS = "shots.json"  # the K-shot subset's images
    CURVES = "curves.png"
    REPORT = "report.html"
    FAILURE_NOTE = "FAILED.txt"  # why the last run into the folder stopped; gone once a run finishes there
    SEEDS_SUMMARY = "seeds_summary.json"  # beside the seed-<s> folders of `train --seeds`
    EVAL = "eval"  # the folder `eval` writes its results into, inside the run folder

    @staticmethod
    def confusion(attribute: str, suffix: str) -> str:
        """confusion_<attribute>.csv / .png (suffix 'csv' or 'png')."""
        return f"confusion_{attribute}.{suffix}"

    @staticmethod
    def seed_folder(seed: int) -> str:
        """The folder of one seed of `train --seeds`: seed-<s>."""
        return f"seed-{seed}"
