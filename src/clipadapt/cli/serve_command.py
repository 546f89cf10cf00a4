"""`clipadapt serve`, as a plain function with typer parameters (cli/main.py registers it)."""

from __future__ import annotations

from pathlib import Path

import typer


def serve_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A run folder written by `clipadapt train`."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 = every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port (0 = any free port)."),
    max_upload_mb: float = typer.Option(10.0, min=0.01, help="Largest request body accepted, in MB (413 above)."),
    max_batch: int = typer.Option(16, min=1, help="Most images in one request (413 above)."),
    timeout: float = typer.Option(30.0, min=1.0, help="Seconds a client may stall while sending or waiting."),
    workers: int = typer.Option(1, min=1, help="Predictions that may run at once (each request gets the answer it "
                                              "gets alone); 1 suits a CPU, where one already uses every core."),
    queue: int = typer.Option(16, min=0, help="Requests that may wait for the model; more get 503."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:1 ..."),
):
    """Serve a run over HTTP: a web page at / where you drop an image and see every attribute's
    prediction with its attention overlay, and a JSON API (POST /api/predict, GET /api/info,
    GET /healthz; see docs/serve.md). The model is loaded once."""
    from clipadapt.cli.common import RUN_FOLDER, out_console, quiet_libraries, require_path, run_safely
    from clipadapt.errors import ClipAdaptError

    def go():
        quiet_libraries()
        require_path(checkpoint, RUN_FOLDER)
        from clipadapt.engine.devices import resolve_device  # torch: only once the run folder is there
        from clipadapt.serve import ServedModel, ServeSettings, make_server

        model = ServedModel(checkpoint, device=resolve_device(device))
        settings = ServeSettings(max_upload_mb=max_upload_mb, max_batch=max_batch, request_timeout=timeout,
                                 running=workers, waiting=queue)
        try:
            server = make_server(model, host, port, settings)
        except OSError as exc:
            raise ClipAdaptError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}); "
                                 "choose another --port or stop what uses it.") from None
        try:  # Ctrl-C right after the banner still closes the server cleanly
            out_console.print(f"serving {model.method.name} from {checkpoint} on {server.url}/  (Ctrl-C to stop)")
            server.serve_forever()
        except KeyboardInterrupt:
            out_console.print("stopped")
        finally:
            server.server_close()

    run_safely(go)
