"""Multi-process training under torchrun: DistributedDataParallel, one process per device.

    torchrun --nproc_per_node 2 -m clipadapt.cli.main train CFG --out RUN

torchrun sets WORLD_SIZE / RANK / LOCAL_RANK (and the rendezvous address); with
WORLD_SIZE > 1 the trainer joins the process group (NCCL for CUDA, gloo for CPU) and:
- each epoch's order comes from a DistributedSampler seeded with (train.seed, epoch),
  which draws the same permutation a single process draws, so rank r's k-th batch of
  train.batch_size / WORLD_SIZE rows holds every WORLD_SIZE-th row of the single
  process's k-th batch: the global batch is the same;
- gradients are averaged across ranks by DDP;
- rank 0 alone writes files (the store entry first, then checkpoints and the run
  folder) and evaluates the test split in full; validation scores are taken from
  rank 0 so every rank makes the same early-stopping decision.
Without torchrun (WORLD_SIZE unset or 1) every helper here is a no-op.
"""

from __future__ import annotations

import atexit
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from clipadapt.errors import ClipAdaptError

STORE_FILL_TIMEOUT_HOURS = 4  # for very large sets, fill the store first: `clipadapt extract CFG`
EXIT_BARRIER_SECONDS = 60  # how long a finished rank waits for its peers before leaving


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context(device: torch.device) -> DistContext:
    """The torchrun job this process belongs to; joins its process group on first call."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            # Rank 0 may fill the feature store while the others wait at a barrier: allow hours.
            dist.init_process_group(backend, timeout=timedelta(hours=STORE_FILL_TIMEOUT_HOURS))
        except (RuntimeError, ValueError) as exc:
            raise ClipAdaptError(f"WORLD_SIZE={world} but the {backend} process group could not start ({exc}). "
                                 "Launch with torchrun (it sets MASTER_ADDR/MASTER_PORT/RANK), or unset WORLD_SIZE.") from None
        atexit.register(teardown)
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def is_main_process() -> bool:
    """True unless this is a rank > 0 of a torchrun job (read from RANK, before any group exists)."""
    return int(os.environ.get("RANK", "0")) == 0


def teardown() -> None:
    """Leave the process group (registered at exit by `context`).

    Every rank first waits for the others: a rank that destroyed its group while a peer
    was still in its last collective was seen to abort ("terminate called without an
    active exception"). The wait is bounded, so a peer that died cannot hold this exit."""
    if not dist.is_initialized():
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=EXIT_BARRIER_SECONDS))
        else:
            dist.barrier()
    except Exception:  # a peer is gone: leave anyway
        pass
    dist.destroy_process_group()


def rank_device(device: torch.device, ctx: DistContext) -> torch.device:
    """One GPU per process: cuda -> cuda:LOCAL_RANK under torchrun; anything else unchanged."""
    if not ctx.active or device.type != "cuda":
        return device
    device = torch.device("cuda", ctx.local_rank)
    torch.cuda.set_device(device)
    return device


def local_batch_size(batch_size: int, ctx: DistContext) -> int:
    """This rank's share of the global batch."""
    if batch_size % ctx.world:
        raise ClipAdaptError(f"train.batch_size={batch_size} does not split evenly over WORLD_SIZE={ctx.world} "
                             "processes; use a multiple of the process count (the global batch stays the same).")
    return batch_size // ctx.world


def epoch_rows(n: int, seed: int, epoch: int, ctx: DistContext) -> np.ndarray:
    """This rank's rows for `epoch`: DistributedSampler(seed).set_epoch(epoch), which shuffles
    with a generator seeded seed + epoch (padding the last rows so every rank gets as many)."""
    sampler = DistributedSampler(range(n), num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return np.fromiter(iter(sampler), dtype=np.int64)


class _TrainingStep(nn.Module):
    """The method as DDP sees it: forward = the runner's training pass, so gradients of
    every trainable parameter used in it are averaged across ranks."""

    def __init__(self, method: nn.Module, forward: Callable):
        super().__init__()
        self.method = method
        self._forward = forward

    def forward(self, batch):
        return self._forward(batch)


def wrap_training(forward: Callable, method: nn.Module, device: torch.device, ctx: DistContext) -> Callable:
    """`forward` itself in one process; under torchrun, the same pass inside DistributedDataParallel."""
    if not ctx.active:
        return forward
    # static_graph: the same parameters take part in every step, which lets DDP skip the
    # per-step search for unused ones (a method may leave some unused) and stay correct.
    return nn.parallel.DistributedDataParallel(
        _TrainingStep(method, forward), device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=False, static_graph=True)


def from_main(value, ctx: DistContext):
    """Rank 0's `value` on every rank (decisions every rank must make alike)."""
    if not ctx.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(value: float, ctx: DistContext) -> float:
    """The mean of a per-rank number (e.g. each rank's training loss)."""
    if not ctx.active:
        return value
    total = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total) / ctx.world


@contextmanager
def main_first(ctx: DistContext) -> Iterator[None]:
    """The body runs on local rank 0 first and on the other ranks after it finished
    (e.g. filling the feature store: one writer per machine, the others then read)."""
    if ctx.active and ctx.local_rank != 0:
        dist.barrier()
    yield
    if ctx.active and ctx.local_rank == 0:
        dist.barrier()
