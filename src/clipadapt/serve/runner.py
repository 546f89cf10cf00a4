"""Running an app on uvicorn from Python: the socket bound first (a port in use is one clear
error before the model loads; port 0 picks a free one and `url` names it), uvicorn quiet
(warnings only, no access log: request lines and headers never reach the log), and the
same server runnable in the foreground (the CLI, Ctrl-C stops it) or in a thread (tests)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import uvicorn

from clipadapt.serve.settings import ServeSettings

CLOSE_GRACE = 5  # seconds a stopping server gives requests in progress


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (raises OSError when it cannot be had)."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # "::" serves IPv4 too
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


class Server:
    """An app served by uvicorn on a socket bound at construction (or given: `sock`). uvicorn
    configures no logging of its own (`log_config` None): its warnings go to the handlers
    of the root logger, as the rest of clipadapt's do."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None,
                 log_level: str = "warning", log_config: dict | None = None, sock: socket.socket | None = None):
        settings = settings or ServeSettings()
        self.socket = sock if sock is not None else bind(host, port)
        # uvicorn refuses a request once `limit_concurrency` connections are open, its own included
        config = uvicorn.Config(app, log_level=log_level, log_config=log_config, access_log=False,
                                limit_concurrency=settings.max_connections + 1, timeout_keep_alive=5,
                                timeout_graceful_shutdown=CLOSE_GRACE, server_header=False, lifespan="on")
        self.uvicorn = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def run(self) -> None:
        """Serve in this thread until stopped (in the main thread, SIGINT / SIGTERM stop it
        gracefully and are raised again afterwards: Ctrl-C ends as KeyboardInterrupt)."""
        self.uvicorn.run(sockets=[self.socket])

    def start(self, timeout: float = 30.0) -> Server:
        """Serve in a daemon thread; return once the server accepts requests."""
        self._thread = threading.Thread(target=self.run, name="clipadapt-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop a server started with `start` (requests in progress get CLOSE_GRACE s)."""
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.socket.close()
