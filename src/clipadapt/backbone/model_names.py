"""The model names open_clip knows, with clipadapt's own architectures added (tiny CLIPs,
micro timm towers). A leaf of the backbone package: `families` lists names through it
without importing the factory (which imports the Hugging Face loader, which imports
`families`)."""

from __future__ import annotations

from pathlib import Path

import open_clip

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
_configs_added = False


def register_configs() -> None:
    """Make clipadapt's own architectures (tiny CLIPs, micro timm towers) known to open_clip, once."""
    global _configs_added
    if not _configs_added:
        import clipadapt.backbone.micro_towers  # noqa: F401  (registers the micro towers with timm)

        open_clip.add_model_config(CONFIG_DIR)
        _configs_added = True


def list_backbones() -> list[str]:
    """Model names usable as backbone.name (open_clip's and clipadapt's)."""
    register_configs()
    return open_clip.list_models()
