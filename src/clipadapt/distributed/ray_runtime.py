"""Running shard jobs on Ray: connecting, sizing the actor pool, streaming the shards.

Each shard becomes one row of a Ray Dataset; `map_batches` sends the rows to a pool of
actors that each hold the model once (loading a CLIP per task would cost more than
the task), and every actor writes its shard's Parquet file itself, so results never
funnel through the driver. The driver only sees one small summary row per shard.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from clipadapt.errors import ClipAdaptError


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray job runs.

    address: a Ray cluster ("ray://head:10001", "head:6379", "auto"); None starts a
        local instance for this job (and stops it afterwards).
    actors: size of the actor pool (None: one per GPU, or one per `cpus_per_actor` CPUs).
    cpus_per_actor: CPUs (and torch threads) each actor holds.
    gpus_per_actor: GPUs each actor holds (None: 1 when the cluster has GPUs, else 0).
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None


def import_ray():
    """`ray` and `ray.data`, or one clear error saying how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ClipAdaptError("--engine ray needs Ray Data: pip install 'clipadapt[ray]' (or 'ray[data]').") from None
    return ray


@contextmanager
def ray_session(options: RayOptions) -> Iterator[object]:
    """Connect to `options.address`, or start a local Ray instance; yields the `ray` module.

    An instance that is already connected (a notebook, a test) is used as it is and left
    running; one started here is shut down on exit.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if options.address:
            ray.init(address=options.address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError ... by cause
        where = f"the Ray cluster at {options.address}" if options.address else "a local Ray instance"
        raise ClipAdaptError(f"Could not start or reach {where} ({type(exc).__name__}: {exc}). "
                             "Check --ray-address (e.g. ray://head:10001 or auto) and that the cluster is up.") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def pool_shape(ray, options: RayOptions) -> tuple[int, float, float]:
    """(actors, cpus per actor, gpus per actor) for the connected cluster."""
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    per_gpu = options.gpus_per_actor if options.gpus_per_actor is not None else (1.0 if gpus else 0.0)
    per_cpu = float(options.cpus_per_actor)
    if per_cpu <= 0 or per_gpu < 0:
        raise ClipAdaptError(f"cpus per actor must be > 0 and gpus per actor >= 0, got {per_cpu} and {per_gpu}.")
    if options.actors is not None:
        actors = int(options.actors)
    elif per_gpu:
        actors = int(gpus // per_gpu)
    else:
        actors = int(float(resources.get("CPU", 1)) // per_cpu)
    return max(actors, 1), per_cpu, per_gpu


def run_shards(rows: list[dict], worker: type, worker_kwargs: dict, options: RayOptions,
               on_done: Callable[[dict], None] | None = None) -> list[dict]:
    """Send every shard row to `worker` actors (`worker(**worker_kwargs)`, called on one-row
    pandas batches) and return their summary rows; `on_done(row)` as each finishes."""
    if not rows:
        return []
    with ray_session(options) as ray:
        actors, cpus, gpus = pool_shape(ray, options)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver shows its own shard count
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # one line per execution step otherwise
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        results = dataset.map_batches(
            worker, fn_constructor_kwargs={**worker_kwargs, "threads": max(int(cpus), 1), "use_gpu": gpus > 0},
            batch_size=1, batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=min(actors, len(rows))),
            num_cpus=cpus, num_gpus=gpus,
        )
        done = []
        for row in results.iter_rows():  # streamed: summaries arrive as shards finish
            if row.get("error"):
                raise ClipAdaptError(f"{row['error']} (shard {row['shard']}, in a Ray worker; the shards finished "
                                     "so far are kept: rerun to resume)")
            done.append(dict(row))
            if on_done is not None:
                on_done(done[-1])
        return done


def shard_summaries(batch, work: Callable[[object], int]):
    """Run `work(row) -> rows written` for every shard row of a one-row-per-shard pandas
    batch. A ClipAdaptError (a bad image under --on-bad-image fail ...) comes back as the
    shard's `error` rather than as an exception: Ray would wrap it in pages of traceback,
    and the driver can say it in one line."""
    import pandas as pd

    done = []
    for row in batch.itertuples(index=False):
        try:
            done.append({"shard": int(row.shard), "rows": int(work(row)), "error": ""})
        except ClipAdaptError as exc:
            done.append({"shard": int(row.shard), "rows": 0, "error": str(exc)})
    return pd.DataFrame(done)
