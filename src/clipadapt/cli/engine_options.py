"""The `--engine local|ray` options of `predict` and `extract`, their Ray branches, and
predict's speed options (`--decode`, `--precision`).

Kept apart from cli/main.py so the commands there gain only their options and one line.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from clipadapt.errors import ClipAdaptError


class Engine(str, Enum):
    """Where the work runs: this process, or a Ray cluster (or a local Ray instance)."""

    local = "local"
    ray = "ray"


class Decode(str, Enum):
    """How predict decodes large JPEGs: reduced-scale DCT decoding, or every pixel."""

    draft = "draft"
    full = "full"


class Precision(str, Enum):
    """The frozen backbone pass at prediction: exact fp32, or a lossy opt-in."""

    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


ENGINE = typer.Option(Engine.local, "--engine", help="local: this process; ray: a pool of Ray actors writing Parquet "
                                                     "shards (resumable by shard).")
RAY_ADDRESS = typer.Option(None, "--ray-address", help="Ray cluster address (e.g. ray://head:10001 or auto); default: "
                                                       "start a local Ray instance for this job.")
RAY_ACTORS = typer.Option(None, "--ray-actors", min=1, help="Actors holding the model (default: one per GPU, else one "
                                                            "per CPU of the cluster).")
SHARD_SIZE = typer.Option(4096, "--shard-size", min=1, help="Images per Parquet shard with --engine ray: the unit of "
                                                            "work and of resumption.")


def check_local(address: Optional[str], actors: Optional[int], shards_dir: Optional[Path] = None) -> None:
    """Ray settings without --engine ray are a mistake worth saying, not ignoring."""
    if address or actors or shards_dir:
        raise ClipAdaptError("--ray-address, --ray-actors and --shards need --engine ray.")


def ray_options(address: Optional[str], actors: Optional[int]):
    """RayOptions from the command-line values."""
    from clipadapt.distributed.ray_runtime import RayOptions

    return RayOptions(address=address, actors=actors)


def extraction_engine(engine: Engine, address: Optional[str], actors: Optional[int], shard_size: int,
                      shards_dir: Optional[Path]):
    """None for the local engine, else the RayExtraction that `extract_run` hands the splits to."""
    if engine is Engine.local:
        check_local(address, actors, shards_dir)
        return None
    from clipadapt.distributed.ray_extract import RayExtraction

    return RayExtraction(ray_options(address, actors), shards_dir=shards_dir, shard_size=shard_size)
