"""One way for the suite to start and stop a local Ray instance (the Ray engine and Ray
Serve tests): two CPUs, no dashboard, the test's own feature cache, one BLAS thread per
worker, and a skip rather than a failure where Ray cannot start at all."""

from __future__ import annotations

import pytest


def local_ray(tmp_path_factory, reason: str):
    """Yield the `ray` module with a local instance running; skip with `reason` when ray
    is not installed. Use it as the body of a module-scoped fixture (`yield from`)."""
    ray = pytest.importorskip("ray", reason=reason)
    cache = tmp_path_factory.mktemp("ray-cache")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"CLIPADAPT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}})
    except Exception as exc:  # no shared memory, no free ports ... on some CI machines
        pytest.skip(f"a local Ray instance could not start here: {type(exc).__name__}: {exc}")
    yield ray
    ray.shutdown()
