"""Settings of the pedestrian-attribute readers (the `data.par` config section)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clipadapt.config import DataConfig
from clipadapt.errors import ClipAdaptError
from clipadapt.validation import describe_errors


class ParOptions(BaseModel):
    """Options shared by the PA100K / PETA / RAP / WIDER / pickle readers.

    Attributes:
        split_index: which of the file's partitions to use (PETA and RAP ship 5,
            numbered 0-4 here; the field reports partition 0).
        uncertain: what an "uncertain / unspecified" raw label becomes (WIDER's 0, RAP's
            2): "ignore" (-1, masked out of loss and metrics; the default, since nobody
            said the attribute is absent) or "negative" (0, the field's published
            convention; use it to compare with published numbers).
        annotation: the annotation file (or WIDER's Annotations folder, or a converted
            pickle folder) when it is not at its usual place; relative to data.root.
        image_dir: the image folder when it is not the usual one (e.g. letter-boxed
            copies such as PromptPAR's "Pad_datasets"); relative to data.root.
        check_images: check up front that every listed image exists (one stat per image;
            about a second for 100k images), so a wrong root fails before training.
    """

    model_config = ConfigDict(extra="forbid")

    split_index: int = Field(0, ge=0)
    uncertain: Literal["ignore", "negative"] = "ignore"
    annotation: Path | None = None
    image_dir: Path | None = None
    check_images: bool = True

    @property
    def uncertain_label(self) -> int:
        return -1 if self.uncertain == "ignore" else 0


def par_options(cfg: DataConfig, options: ParOptions | dict[str, Any] | None = None) -> ParOptions:
    """The options passed in, else `cfg.par`, else defaults."""
    if options is None:
        options = getattr(cfg, "par", None)
    if options is None:
        return ParOptions()
    if isinstance(options, ParOptions):
        return options
    if isinstance(options, BaseModel):  # the config's own model of the same section
        options = options.model_dump()
    try:
        return ParOptions.model_validate(options)
    except ValidationError as exc:
        problems = describe_errors(exc)
        raise ClipAdaptError(
            f"Invalid data.par options: {problems}. Known keys: {', '.join(ParOptions.model_fields)}."
        ) from None


def check_par_settings(cfg: DataConfig) -> None:
    """data.par's keys and values (split index, uncertain rule ...), before any file is read."""
    par_options(cfg)


def dataset_root(cfg: DataConfig, fmt: str, what: str) -> Path:
    """data.root, required by every PAR reader."""
    if cfg.root is None:
        raise ClipAdaptError(f"data.root is required for format '{fmt}' (the folder holding {what}).")
    return Path(cfg.root).expanduser()


def under_root(root: Path, path: Path | None) -> Path | None:
    """An option path, relative paths taken from data.root."""
    if path is None:
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path
