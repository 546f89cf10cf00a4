"""The `--engine local|ray` options of `predict` and `extract`, their Ray branches, and
predict's speed options (`--decode`, `--precision`).

Kept apart from cli/main.py so the commands there gain only their options and one line.
"""

from __future__ import annotations

from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

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


def predict_on_ray(checkpoint: Path, paths: list, out: Path, threshold: float, batch_size: int, num_workers: int,
                   address: Optional[str], actors: Optional[int], shard_size: int, quiet: bool, console: Console,
                   **predict_options) -> None:
    """`clipadapt predict --engine ray`: shards into the folder `out`, then one summary line."""
    from clipadapt.distributed.ray_predict import predict_with_ray

    if out.suffix.lower() in (".csv", ".parquet", ".pq"):
        raise ClipAdaptError(f"--engine ray writes Parquet shards into a folder, not {out.name}: give --out FOLDER "
                             "(read it back with pandas.read_parquet(FOLDER)).")
    from clipadapt.backbone.clip import CPU_ONLY_PRECISIONS

    options = ray_options(address, actors)
    if predict_options.get("precision") in CPU_ONLY_PRECISIONS:  # as the local engine's --device auto
        options = replace(options, gpus_per_actor=0.0)
    done = predict_with_ray(checkpoint, paths, out, options, shard_size=shard_size,
                            batch_size=batch_size, num_workers=num_workers, threshold=threshold, progress=not quiet,
                            **predict_options)
    bad = f"; {done['unreadable']} unusable images (ok=false in their rows)" if done["unreadable"] else ""
    console.print(f"wrote {done['rows']} rows in {done['shards']} shards to {out} ({done['computed_shards']} computed "
                  f"now, the rest already there){bad}", highlight=False, soft_wrap=True)


def extraction_engine(engine: Engine, address: Optional[str], actors: Optional[int], shard_size: int,
                      shards_dir: Optional[Path]):
    """None for the local engine, else the RayExtraction that `extract_run` hands the splits to."""
    if engine is Engine.local:
        check_local(address, actors, shards_dir)
        return None
    from clipadapt.distributed.ray_extract import RayExtraction

    return RayExtraction(ray_options(address, actors), shards_dir=shards_dir, shard_size=shard_size)
