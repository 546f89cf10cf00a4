"""The files the engine writes into a run folder: the selected epoch's tensors, the resume
state and the skipped images' list. The engine writes them only through a `RunState`;
`workflow.RunFolder` extends it with the rest of the folder (config, card, history,
metrics, report), so one writer owns every file of a run. File names: `clipadapt.run_files`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from clipadapt.data.bad_images import SkippedImage, record_skipped
from clipadapt.engine.checkpoint import read_state, save_state
from clipadapt.errors import ClipAdaptError
from clipadapt.run_files import RunFiles


class RunState:
    """A run folder as the engine sees it. `write=False` (a rank > 0 of a torchrun job)
    writes nothing: rank 0 writes the folder."""

    def __init__(self, path: Path, write: bool = True):
        self.path = Path(path)
        self.write = write

    def file(self, name: str) -> Path:
        """The path of one of the folder's files (a `RunFiles` name)."""
        return self.path / name

    def save_best(self, state: dict[str, torch.Tensor]) -> None:
        """The selected epoch's trained tensors (checkpoint.safetensors)."""
        if self.write:
            save_state(self.file(RunFiles.CHECKPOINT), state)

    def read_best(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        return read_state(self.file(RunFiles.CHECKPOINT), device=str(device))[0]

    def save_resume(self, state: dict[str, torch.Tensor], info: dict) -> None:
        """Tensors and the loop's position in one file: a crash between writing the tensors
        and a separate JSON would resume epoch e's weights with epoch e-1's position."""
        if self.write:
            save_state(self.file(RunFiles.RESUME_STATE), state, metadata={"resume": json.dumps(info)})

    def read_resume(self, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
        """The resume state's tensors and position; one clear error for a state without one."""
        path = self.file(RunFiles.RESUME_STATE)
        state, metadata = read_state(path, device=str(device))
        if "resume" not in metadata:
            raise ClipAdaptError(f"{path} holds no resume position (written by an older clipadapt). "
                                 "Delete it to train this run from the start.")
        return state, json.loads(metadata["resume"])

    def has_resume(self) -> bool:
        return self.file(RunFiles.RESUME_STATE).is_file()

    def record_skipped(self, skipped: list[SkippedImage]) -> None:
        """skipped_images.csv: the images left out, with their reasons."""
        if self.write:
            record_skipped(self.path, skipped)


def resume_epochs_done(run_dir: Path) -> int | None:
    """How many epochs the resume state in `run_dir` holds; None when there is none. Reads
    only the file's header, so asking costs nothing; -1 when the header cannot be read
    (the resume itself then says what is wrong with the file)."""
    from safetensors import safe_open

    path = Path(run_dir) / RunFiles.RESUME_STATE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            return int(json.loads((fh.metadata() or {})["resume"])["epoch"])
    except Exception:  # damaged, or written by an older clipadapt: still a state, of unknown length
        return -1
