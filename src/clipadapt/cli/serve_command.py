"""`clipadapt serve`, as a plain function with typer parameters (cli/main.py registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from clipadapt.cli.engine_options import RAY_ADDRESS, Engine


def serve_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A run folder written by `clipadapt train`."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 = every interface: set a key)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port (0 = any free port)."),
    max_upload_mb: float = typer.Option(10.0, min=0.01, help="Largest request body accepted, in MB (413 above)."),
    max_batch: int = typer.Option(16, min=1, help="Most images in one request (413 above)."),
    timeout: float = typer.Option(30.0, min=1.0, help="Seconds a body may take to arrive (408) and a request may "
                                                     "wait for the model (503)."),
    workers: int = typer.Option(1, min=1, help="Forward passes that may run at once."),
    queue: int = typer.Option(16, min=0, help="Requests that may wait while every forward pass is busy; more get "
                                              "503 at once."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:1 ..."),
    batch_size: int = typer.Option(8, min=1, help="Images per forward pass: requests arriving together share one "
                                                  "(a request with more images is split)."),
    batch_wait_ms: float = typer.Option(5.0, min=0.0, help="Milliseconds a forward pass waits for more images "
                                                           "once it has one."),
    # two flags, not one --pad-batches/--no-pad-batches pair: the pair's column does not fit --help at 80 columns
    pad_batches: bool = typer.Option(False, "--pad-batches", help="Pad every forward pass to a fixed number of rows, "
                                     "so each answer equals the answer the image gets alone, bit for bit (the "
                                     "default)."),
    no_pad_batches: bool = typer.Option(False, "--no-pad-batches", help="Do not pad: small batches cost less, and "
                                        "answers may differ from the answer alone by float32 rounding (~1e-6)."),
    api_key: Optional[List[str]] = typer.Option(None, "--api-key", help="A key clients must send to use /api/* and "
                                                "/metrics, as a bearer token or an X-API-Key header; repeatable. "
                                                "Also read from CLIPADAPT_API_KEY."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="A file of keys, one per line (# starts "
                                                "a comment)."),
    engine: Engine = typer.Option(Engine.local, "--engine", help="local: this process (uvicorn); ray: --replicas "
                                  "copies of the model behind Ray Serve's HTTP proxy."),
    replicas: Optional[int] = typer.Option(None, "--replicas", min=1, help="Replicas with --engine ray, each with "
                                           "an equal share of the CPUs (default: one per GPU, else 1)."),
    ray_address: Optional[str] = RAY_ADDRESS,
):
    """Serve a run over HTTP: a web page at / where you drop an image and see every attribute's
    prediction with its attention overlay, and a JSON API (POST /api/predict, GET /api/info,
    /healthz, /readyz, /metrics, /docs; see docs/serve.md). Requests that arrive together are
    predicted in one batch. The model is loaded once."""
    from clipadapt.cli.common import RUN_FOLDER, console, out_console, quiet_libraries, require_path, run_safely
    from clipadapt.errors import ClipAdaptError

    def go():
        quiet_libraries()
        require_path(checkpoint, RUN_FOLDER)
        from clipadapt.serve.extras import require_serve_libraries
        from clipadapt.serve.keys import load_keys

        require_serve_libraries()
        if pad_batches and no_pad_batches:
            raise ClipAdaptError("--pad-batches and --no-pad-batches contradict each other; give one (padding is "
                                 "the default).")
        if engine is Engine.local and (replicas or ray_address):
            raise ClipAdaptError("--replicas and --ray-address need --engine ray.")
        keys = load_keys(api_key or (), api_key_file)
        from clipadapt.cli.terminal_log import print_warning
        from clipadapt.serve.runner import Server, bind, is_loopback
        from clipadapt.serve.settings import ServeSettings

        settings = ServeSettings(max_upload_mb=max_upload_mb, max_batch=max_batch, request_timeout=timeout,
                                 workers=workers, queue=queue, batch_size=batch_size, batch_wait_ms=batch_wait_ms,
                                 pad_batches=not no_pad_batches)
        if not keys and not is_loopback(host):
            print_warning(console, f"--host {host}: other machines can reach this service and no API key is set; "
                                   "anyone who can reach it can use it (--api-key, CLIPADAPT_API_KEY or "
                                   "--api-key-file; see docs/serve.md).")
        if engine is Engine.ray:  # the same app, one per replica: serve/ray_serve.py
            from clipadapt.serve.ray_serve import serve_on_ray

            serve_on_ray(checkpoint, settings, keys, replicas, device, host, port, ray_address,
                         announce=lambda line: out_console.print(line, soft_wrap=True))
            out_console.print("stopped")
            return
        from clipadapt.engine.devices import resolve_device  # torch: only once the cheap checks passed
        from clipadapt.serve.app import create_app
        from clipadapt.serve.model import ServedModel

        try:  # the port first: a port in use is answered before the model loads
            sock = bind(host, port)
        except OSError as exc:
            raise ClipAdaptError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}); "
                                 "choose another --port or stop what uses it.") from None
        try:
            model = ServedModel(checkpoint, device=resolve_device(device))
            server = Server(create_app(model, settings, keys), settings=settings, sock=sock)
            guarded = f", {len(keys)} API key{'s' if len(keys) != 1 else ''}" if keys else ""
            out_console.print(f"serving {model.method.name} from {checkpoint} on {server.url}/  "
                              f"(Ctrl-C to stop{guarded})", soft_wrap=True)
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            sock.close()
        out_console.print("stopped")

    run_safely(go)
