"""Beyond one machine: Ray engines for `predict` and `extract` (Parquet shards, resumable
by shard). Multi-process training (torchrun + DDP) lives in `clipadapt.engine.distributed`."""

from clipadapt.distributed.ray_runtime import RayOptions
from clipadapt.distributed.shards import DEFAULT_SHARD_SIZE, read_shards

__all__ = ["DEFAULT_SHARD_SIZE", "RayOptions", "read_shards"]
