"""Reading CLIP weights from disk safely (safetensors, or torch files without pickled code)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from clipadapt.errors import ClipAdaptError

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"

# name -> weights shipped inside the package (see scripts/pretrain_tiny_clip.py)
EMBEDDED_WEIGHTS = {"clipadapt-tiny": ASSETS_DIR / "clipadapt-tiny.safetensors"}


def file_fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (short hex): the identity of local weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()[:16]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict from .safetensors or a torch file, never executing pickled code.

    Accepts a bare state dict or one nested under "state_dict" / "model"; strips a
    leading "module." (DataParallel) from every key.
    """
    path = Path(path)
    if not path.is_file():
        raise ClipAdaptError(f"Weights file not found: {path}. Pass an existing open_clip checkpoint path.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:  # truncated or not a safetensors file
            raise ClipAdaptError(f"Could not read weights from {path}: {exc}. Re-download or re-export the file.") from None
    else:
        from clipadapt.safe_pickle import safe_torch_load

        # torch's own refusal text advises weights_only=False; this one line names what was refused
        state = safe_torch_load(path)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ClipAdaptError(f"{path} does not hold a state dict (got {type(state).__name__}).")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


WRONG_ARCHITECTURE = "Check that backbone.name matches the architecture the weights were trained with."


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, what: str,
                expected: dict[str, torch.Tensor] | None = None, fix: str = WRONG_ARCHITECTURE) -> None:
    """The one strict weight loader: every key of `expected` (default: `model`'s whole
    state_dict) must be in `state` with its shape, and no other key; a mismatch is one clear
    error naming the file (`source`), the model (`what`, e.g. "model 'ViT-B-16'") and the fix.

    With `expected` (a method's trained tensors: the frozen backbone is not in its file) only
    those keys are loaded; the rest of `model` keeps its weights."""
    own = model.state_dict() if expected is None else expected
    problems = mismatches(own, state)
    if problems:
        raise ClipAdaptError(f"Weights {source} do not fit {what}: " + "; ".join(problems) + f". {fix}")
    if expected is None:
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    else:  # the keys were checked above; strict=False only lets the untouched (frozen) ones be
        model.load_state_dict(state, strict=False)


def mismatches(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """The missing, unexpected and mis-shaped keys of `state` against `own`, one phrase each kind."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    if wrong_shape:
        k = wrong_shape[0]
        parts.append(f"{len(wrong_shape)} shape mismatches (e.g. shape of {k}: file {tuple(state[k].shape)} vs "
                     f"model {tuple(own[k].shape)})")
    return parts
