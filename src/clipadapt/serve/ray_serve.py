"""`clipadapt serve --engine ray`: the app of `create_app`, the same one uvicorn serves, on
Ray Serve, one copy per replica behind Ray Serve's HTTP proxy.

A replica is a Ray actor that loads the run once (its constructor) and then builds the
app around that model (`__serve_build_asgi_app__`, which Ray Serve calls on the replica
after the constructor): the same routes, keys, limits, batcher and metrics as the local
command, each replica with its own batcher and its own metrics. The proxy spreads
requests over the replicas; a replica's answers carry its id in `X-Clipadapt-Replica`,
so a client (or a test) can tell which one answered, and whose /metrics it reads.

A replica counts as started only once its warm-up forward pass has run (the app's
startup is held until then), so `serve.run` returns, and the proxy sends a replica
requests, when it can answer them at once.

Imports no Ray at module level: `require_ray_serve` says what to install when it is missing.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from clipadapt.errors import ClipAdaptError
from clipadapt.serve.settings import ServeSettings

APP_NAME = "clipadapt"  # the Ray Serve application (and deployment) name
REPLICA_HEADER = "X-Clipadapt-Replica"
WARM_UP_TIMEOUT = 300.0  # seconds a replica's warm-up forward may take before Ray Serve restarts it
INSTALL = "pip install 'clipadapt[serve-ray]'"


def require_ray_serve():
    """`ray.serve`, or one clear error: not installed, or a Ray whose `serve.ingress` cannot
    build the app on the replica (the replica must load the model before the app exists)."""
    try:
        from ray import serve
    except ImportError:
        raise ClipAdaptError(f"clipadapt serve --engine ray needs Ray Serve (not installed); {INSTALL}.") from None
    if inspect.signature(serve.ingress).parameters["app"].default is not None:
        import ray

        raise ClipAdaptError(f"clipadapt serve --engine ray needs a newer Ray Serve than Ray {ray.__version__} "
                             f"(serve.ingress() that builds the app on the replica); pip install -U 'ray[serve]'.")
    return serve


@dataclass(frozen=True)
class ReplicaShape:
    """How many replicas, and the Ray resources (and torch threads) each one holds."""

    replicas: int
    cpus: float
    gpus: float

    @property
    def threads(self) -> int:
        return max(int(self.cpus), 1)

    def describe(self) -> str:
        shares = f"{self.cpus:g} CPU" + (f", {self.gpus:g} GPU" if self.gpus else "")
        return f"{self.replicas} replica{'s' if self.replicas != 1 else ''} of {shares}"


def check_device(device: str) -> None:
    """Ray, not the command, picks each replica's GPU: a GPU's number means nothing there."""
    if device not in ("auto", "cpu", "cuda"):
        raise ClipAdaptError(f"--device {device}: with --engine ray use auto, cpu or cuda (Ray gives each replica "
                             "its own GPU; a replica sees it as cuda).")


def replica_shape(ray, replicas: int | None, device: str = "auto") -> ReplicaShape:
    """Replicas and their shares of the connected cluster.

    GPUs: with `device` auto or cuda and GPUs in the cluster, one replica per GPU by default,
    and `replicas` beyond the GPUs share them (a fraction each). CPUs: an equal share of the
    cluster's, whole CPUs where there are enough (torch gets that many threads), at most
    one node's worth (a replica lives on one node), and a fraction where there are more
    replicas than CPUs: a share nobody can grant would leave `serve.run` waiting forever.
    """
    check_device(device)
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    if device == "cuda" and not gpus:
        raise ClipAdaptError("--device cuda: the Ray cluster has no GPU; use --device cpu or auto.")
    use_gpu = gpus > 0 and device != "cpu"
    count = int(replicas) if replicas else (max(int(gpus), 1) if use_gpu else 1)
    per_gpu = min(1.0, gpus / count) if use_gpu else 0.0
    cpus = float(resources.get("CPU", 1))
    largest = max((float(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")),
                  default=cpus)
    per_cpu = min(cpus / count, largest)
    per_cpu = float(int(per_cpu)) if per_cpu >= 1 else round(per_cpu, 4)
    return ReplicaShape(count, per_cpu, round(per_gpu, 4))


class Replica:
    """One Ray Serve replica: the run loaded once, the app built around it (see the module
    docstring); Ray Serve wraps it with `serve.ingress()` in `deployment`."""

    def __init__(self, run_dir: str, settings: ServeSettings, keys: Sequence[str], threads: int, use_gpu: bool):
        from clipadapt.serve.model import ServedModel
        from clipadapt.threads import share_cores

        # the replica's CPU share, fixed, as the Ray actors of predict and extract take theirs;
        # ServedModel's own share_cores() then keeps it
        share_cores(threads)
        self.model = ServedModel(Path(run_dir), device="cuda" if use_gpu else "cpu")
        self.settings, self.keys = settings, tuple(keys)

    def __serve_build_asgi_app__(self):
        from ray import serve

        from clipadapt.serve.app import create_app

        app = create_app(self.model, self.settings, self.keys)
        app.add_middleware(ReplicaHeader, replica=serve.get_replica_context().replica_id.unique_id)
        _hold_startup_until_warm(app, WARM_UP_TIMEOUT)
        return app


class ReplicaHeader:
    """ASGI middleware: every answer names the replica that gave it."""

    def __init__(self, app, replica: str):
        self.app, self.value = app, replica.encode("latin-1", "replace")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_named(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (REPLICA_HEADER.lower().encode(), self.value)]}
            await send(message)

        await self.app(scope, receive, send_named)


def _hold_startup_until_warm(app, timeout: float) -> None:
    """Make the app's startup end only once its batcher's warm-up forward has run. Ray Serve
    marks a replica running (and routes to it) when the startup ends; a warm-up that fails
    or hangs fails the startup after `timeout` s, and Ray Serve starts the replica again."""
    started = app.router.lifespan_context

    @asynccontextmanager
    async def warmed(served):
        async with started(served) as state:
            deadline = time.monotonic() + timeout
            while not served.state.batcher.ready:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the warm-up forward did not finish within {timeout:g} s (see the log above)")
                await asyncio.sleep(0.02)
            yield state

    app.router.lifespan_context = warmed


def deployment(serve, run_dir: Path, settings: ServeSettings, keys: Sequence[str], shape: ReplicaShape):
    """The Ray Serve application: `shape.replicas` copies of `Replica`, each admitting as many
    requests at once as the local server does (`max_connections`), so the app's own queue
    and its 503s work as they do under uvicorn."""
    ingress = serve.ingress()(Replica)
    deployed = serve.deployment(ingress, name=APP_NAME, num_replicas=shape.replicas,
                                ray_actor_options={"num_cpus": shape.cpus, "num_gpus": shape.gpus},
                                max_ongoing_requests=settings.max_connections)
    return deployed.bind(str(Path(run_dir).resolve()), settings, tuple(keys), shape.threads, shape.gpus > 0)


def deploy(run_dir: Path, settings: ServeSettings, keys: Sequence[str], shape: ReplicaShape,
           host: str = "127.0.0.1", port: int = 8000) -> str:
    """Start Serve's HTTP proxy on host:port (port 0: a free one) in the connected Ray, run the
    application, and return its URL once every replica is warmed up."""
    serve = require_ray_serve()
    port = port or free_port(host)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # a line per deployment step otherwise
    serve.start(http_options={"host": host, "port": port})
    try:
        serve.run(deployment(serve, run_dir, settings, keys, shape), name=APP_NAME, route_prefix="/",
                  blocking=False)
    except RuntimeError as exc:  # "Failed to update the deployments": the why is in the status
        why = replica_error(serve) or str(exc).strip()
        serve.delete(APP_NAME)  # a failed application would stay on a cluster
        raise ClipAdaptError(f"The Ray Serve replicas did not start: {why}") from None
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def replica_error(serve) -> str:
    """The exception a failed replica raised (the last line of the traceback Ray Serve keeps
    in the deployment's status), as one line; a ClipAdaptError reads as it does locally."""
    try:
        app = serve.status().applications.get(APP_NAME)
        messages = [d.message for d in app.deployments.values() if d.message] if app else []
    except Exception:  # noqa: BLE001 - no status to read: the caller says what it has
        return ""
    lines = [line.strip() for message in messages for line in message.splitlines() if line.strip()]
    return lines[-1].removeprefix(f"{ClipAdaptError.__module__}.{ClipAdaptError.__name__}: ") if lines else ""


def undeploy(stop_serve: bool = True) -> None:
    """Delete the application: Ray Serve drains its replicas, and each app's shutdown closes
    its batcher. With `stop_serve`, Serve's proxy and controller stop too, unless other
    applications still run on it (a shared cluster keeps its Serve instance). A local Ray
    instance about to shut down needs no `stop_serve`: its end stops them, and Ray's
    `serve.shutdown` prints a spurious raylet error there (Ray 2.60: "Task
    ServeController.graceful_shutdown failed ... killed by `ray.kill`")."""
    from ray import serve

    try:
        serve.delete(APP_NAME)
        others = bool(serve.status().applications)
    except Exception:  # noqa: BLE001 - Serve already gone: nothing is left to delete
        others = False
    if stop_serve and not others:
        serve.shutdown()


def free_port(host: str) -> int:
    """A port that is free on `host` now (Ray's proxy binds it a moment later)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def serve_on_ray(run_dir: Path, settings: ServeSettings, keys: Sequence[str], replicas: int | None,
                 device: str, host: str, port: int, address: str | None,
                 announce: Callable[[str], None] = print) -> None:
    """The command: connect to Ray (or start a local instance), deploy, `announce` the URL,
    serve until Ctrl-C, then stop the application (and the local instance)."""
    check_device(device)
    require_ray_serve()
    from clipadapt.distributed.ray_runtime import RayOptions, ray_session
    from clipadapt.serve.runner import bind

    if address is None:  # a local proxy: a port in use is answered before any replica loads
        try:
            bind(host, port).close()
        except OSError as exc:
            raise ClipAdaptError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}); "
                                 "choose another --port or stop what uses it.") from None
    elif port == 0:
        raise ClipAdaptError("--port 0 picks a free port on this machine; with --ray-address name the port.")
    with ray_session(RayOptions(address=address)) as ray:
        shape = replica_shape(ray, replicas, device)
        try:
            url = deploy(run_dir, settings, keys, shape, host, port)
            guarded = f", {len(keys)} API key{'s' if len(keys) != 1 else ''}" if keys else ""
            announce(f"serving {run_dir} on {url}/  ({shape.describe()} each on Ray Serve; Ctrl-C to "
                     f"stop{guarded})")
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            undeploy(stop_serve=address is not None)
