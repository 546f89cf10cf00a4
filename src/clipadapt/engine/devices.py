"""Where and how a run computes: the device, its autocast, and the seeds."""

from __future__ import annotations

import random

import numpy as np
import torch

from clipadapt.errors import ClipAdaptError


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as given (validated)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ClipAdaptError(f"Unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ClipAdaptError(f"train.device={name} but no CUDA device is available here. Use train.device=auto or cpu.")
    return device


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
