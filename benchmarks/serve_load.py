"""Benchmark: `clipadapt serve` under load, the old server against the new one (issue 29, item 6).

In one run on this machine: the OLD server (the ThreadingHTTPServer of `--old-ref`, checked
out with `git worktree add` into a temporary folder) and the NEW server (the working tree, or
`--new-ref`) are started as subprocesses on free loopback ports, serving the same run folder,
and loaded in turn with the same JPEGs by 1, 8 and 32 concurrent clients (`--clients`). Each
client sends POST /api/predict back to back for `--seconds` (or `--requests` each). Reported
per server x clients: answered requests/s and images/s, p50 / p90 / p99 latency of the
answered requests, and every failure by kind (HTTP status such as 503, timeout, connection
refused or reset, a 200 without the right predictions). Then a row above the queue limit:
each server with a small queue (`--limit-args`, default `--queue 2`) under 32 clients, where
503 answers are expected and timeouts are not.

    .venv/bin/python benchmarks/serve_load.py                       # old vs working tree, 1/8/32 clients, 10 s each
    .venv/bin/python benchmarks/serve_load.py --new-args="--no-pad-batches" --clients 1,8 --limit-args=""
    .venv/bin/python benchmarks/serve_load.py --new-ref 1c9f4e4 --clients 1,8 --seconds 3   # old vs old: a sanity run

The run folder is made here unless `--checkpoint` names one: CLIP-MHAdapter on the embedded
tiny CLIP (64 px), the eight synthetic GSS attributes, one epoch on 64 images (~15 s), the
shape of the demo run that docs/serve.md's figures came from. The images are `--images`
procedural 640 x 480 street-like JPEGs (about 40-60 KB), or the files of `--image-dir`.

The load generator runs on the same cores as the server: it is one asyncio thread speaking
HTTP/1.1 over raw sockets (keep-alive where the server allows it; the old server closes
every connection), and each row reports the CPU the server, this client and other programs
used meanwhile. The servers run with CLIPADAPT_THREADS unset (auto: a fair share of the
cores, read when the first prediction starts). Writes benchmarks/results/serve_load.json
and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import platform
import random
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD_REF = "1c9f4e44ab86e44f07c421097285c3b97e06ba7d"
HOST = "127.0.0.1"
# `clipadapt serve ...` from the clipadapt on PYTHONPATH; the first line of stderr says which one was imported.
LAUNCH = ("import sys, clipadapt; print('clipadapt from ' + clipadapt.__file__, file=sys.stderr, flush=True); "
          "from clipadapt.cli.main import app; app()")
# A CLIP-MHAdapter run on the embedded tiny CLIP and the eight synthetic GSS attributes, in seconds.
MAKE_RUN = """
import sys, clipadapt
data_root, out = sys.argv[1], sys.argv[2]
clipadapt.train({"backbone": {"name": "clipadapt-tiny", "pretrained": "embedded"},
                 "data": {"format": "synthetic-gss", "root": data_root,
                          "synthetic": {"n_train": 64, "n_test": 32, "seed": 0, "image_size": 96}},
                 "method": {"name": "mhadapter", "params": {"beta": 0.8, "heads": 4}},
                 "train": {"epochs": 1, "batch_size": 32, "warmup_epochs": 0, "patience": None}}, out)
"""
CONNECTION_KINDS = ("connect", "reset")  # a client pauses briefly after these rather than spin


# ---------------------------------------------------------------------------- statistics
def percentile(values, q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's
    default); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Outcome:
    """One request: when it started (perf_counter s), how long it took (s), how it ended
    ("ok", an HTTP status such as "503", "timeout", "connect", "reset", "protocol",
    "bad_answer") and how many images it carried."""

    started: float
    latency: float
    kind: str
    images: int = 1


def summarize(outcomes: list[Outcome], elapsed: float) -> dict:
    """Throughput of the answered requests over `elapsed` seconds, their latency
    percentiles (ms), and every other outcome counted by kind."""
    ok = [o for o in outcomes if o.kind == "ok"]
    latencies = [o.latency * 1000.0 for o in ok]
    errors = Counter(o.kind for o in outcomes if o.kind != "ok")

    def ms(value):
        return None if value is None else round(value, 1)

    return {
        "requests": len(outcomes), "ok": len(ok), "elapsed_s": round(elapsed, 3),
        "requests_per_s": round(len(ok) / elapsed, 2) if elapsed > 0 else None,
        "images_per_s": round(sum(o.images for o in ok) / elapsed, 2) if elapsed > 0 else None,
        "attempts_per_s": round(len(outcomes) / elapsed, 2) if elapsed > 0 else None,
        "p50_ms": ms(percentile(latencies, 50)), "p90_ms": ms(percentile(latencies, 90)),
        "p99_ms": ms(percentile(latencies, 99)),
        "mean_ms": ms(statistics.fmean(latencies)) if latencies else None, "max_ms": ms(max(latencies, default=None)),
        "errors": dict(sorted(errors.items())), "error_count": sum(errors.values()),
        # how fast a refusal comes: a 503 should be at once, not after a wait
        "refused_p50_ms": ms(percentile([o.latency * 1000.0 for o in outcomes if o.kind == "503"], 50)),
    }


def error_text(errors: dict) -> str:
    """'0' or '503: 120, timeout: 2'."""
    return ", ".join(f"{kind}: {n}" for kind, n in errors.items()) if errors else "0"


# ---------------------------------------------------------------------------- HTTP client
class ProtocolError(Exception):
    """The server's answer is not HTTP we can read."""


class ConnectFailed(Exception):
    """No connection could be opened."""


class HttpConnection:
    """One client's connection: HTTP/1.1 over asyncio streams, kept alive while the server
    allows it (answer HTTP/1.1, no `Connection: close`), reopened otherwise."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body). A kept-alive connection the server
        closed meanwhile is reopened once, as any HTTP client does."""
        reused = self.writer is not None
        try:
            return await self._exchange(method, path, body, headers)
        except (ConnectionError, asyncio.IncompleteReadError, _EmptyAnswer):
            self.close()
            if not reused:
                raise
        return await self._exchange(method, path, body, headers)

    async def _exchange(self, method, path, body, headers):
        if self.writer is None:
            try:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                raise ConnectFailed(str(exc)) from None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise _EmptyAnswer("the server closed the connection without answering")
        parts = status_line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {status_line[:80]!r}")
        version, status = parts[0], int(parts[1])
        answer_headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise ProtocolError("the headers ended without a blank line")
            name, _, value = line.decode("latin-1").partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        framed = True
        if "content-length" in answer_headers:
            content = await self.reader.readexactly(int(answer_headers["content-length"]))
        elif "chunked" in answer_headers.get("transfer-encoding", "").lower():
            content = await self._chunked()
        else:  # the body runs to the end of the connection
            content, framed = await self.reader.read(), False
        if not framed or version != "HTTP/1.1" or "close" in answer_headers.get("connection", "").lower():
            self.close()
        return status, answer_headers, content

    async def _chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int((await self.reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(out)
            out += await self.reader.readexactly(size)
            await self.reader.readexactly(2)


class _EmptyAnswer(ConnectionError):
    """The connection closed before a status line (a kept-alive socket the server dropped)."""


@dataclass(frozen=True)
class Payload:
    """A request body ready to send: the bytes, its Content-Type and how many images it holds."""

    body: bytes
    content_type: str
    images: int


def payloads(images: list[bytes], per_request: int) -> list[Payload]:
    """One payload per starting image: the image as the raw body (one per request), or
    `per_request` consecutive images (cycling) as multipart/form-data fields 'image'."""
    if per_request <= 1:
        return [Payload(img, "image/jpeg", 1) for img in images]
    out = []
    boundary = "clipadaptloadboundary7f3a"
    for start in range(len(images)):
        parts = []
        for j in range(per_request):
            index = (start + j) % len(images)
            parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                         f"filename=\"img{index}.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n".encode() + images[index]
                         + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        out.append(Payload(body, f"multipart/form-data; boundary={boundary}", per_request))
    return out


def judge(status: int, headers: dict[str, str], body: bytes, images: int) -> tuple[str, float | None]:
    """(kind, Retry-After seconds) of an answer: "ok" only for a 200 whose JSON holds one
    successful prediction per image sent."""
    if status != 200:
        retry = headers.get("retry-after", "")
        try:
            retry_after = float(retry) if retry else None
        except ValueError:
            retry_after = None
        return str(status), retry_after
    try:
        predictions = json.loads(body)["predictions"]
    except (ValueError, KeyError, TypeError):
        return "bad_answer", None
    if not isinstance(predictions, list) or len(predictions) != images:
        return "bad_answer", None
    if any(not isinstance(p, dict) or p.get("ok", True) is False for p in predictions):
        return "bad_answer", None
    return "ok", None


@dataclass
class LoadSettings:
    """How the clients behave."""

    path: str = "/api/predict"
    timeout: float = 60.0  # seconds one request may take before it counts as a timeout
    honor_retry_after: bool = True  # after a 503, wait what Retry-After says (at most until the deadline)
    headers: dict = field(default_factory=dict)


async def one_request(conn: HttpConnection, payload: Payload, settings: LoadSettings,
                      samples: dict[str, str]) -> tuple[str, float | None]:
    """Send one payload; (kind, Retry-After). The first answer body of each failure kind is
    kept in `samples` (200 characters), so a refusal says why."""
    headers = {"Content-Type": payload.content_type, **settings.headers}
    try:
        status, answer_headers, body = await asyncio.wait_for(
            conn.request("POST", settings.path, payload.body, headers), settings.timeout)
    except asyncio.TimeoutError:
        conn.close()
        return "timeout", None
    except ConnectFailed as exc:
        samples.setdefault("connect", str(exc)[:200])
        return "connect", None
    except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
        conn.close()
        samples.setdefault("reset", f"{type(exc).__name__}: {exc}"[:200])
        return "reset", None
    except (ProtocolError, ValueError) as exc:
        conn.close()
        samples.setdefault("protocol", str(exc)[:200])
        return "protocol", None
    kind, retry_after = judge(status, answer_headers, body, payload.images)
    if kind != "ok":
        samples.setdefault(kind, body[:200].decode("utf-8", "replace"))
    return kind, retry_after


async def client_loop(index: int, port: int, items: list[Payload], settings: LoadSettings, deadline: float,
                      count: int | None, out: list[Outcome], samples: dict[str, str]) -> None:
    """One client: requests back to back until `deadline` (perf_counter) or `count` requests,
    cycling through `items` from its own starting point."""
    conn = HttpConnection(HOST, port)
    k = 0
    try:
        while time.perf_counter() < deadline and (count is None or k < count):
            payload = items[(index + k) % len(items)]
            started = time.perf_counter()
            kind, retry_after = await one_request(conn, payload, settings, samples)
            out.append(Outcome(started, time.perf_counter() - started, kind, payload.images))
            k += 1
            left = deadline - time.perf_counter()
            if kind == "503" and settings.honor_retry_after and retry_after:
                await asyncio.sleep(max(0.0, min(retry_after, left)))
            elif kind in CONNECTION_KINDS:
                await asyncio.sleep(max(0.0, min(0.05, left)))  # a dead server must not become a busy loop
    finally:
        conn.close()


async def run_load(port: int, items: list[Payload], clients: int, seconds: float, settings: LoadSettings,
                   count: int | None = None) -> tuple[list[Outcome], float, dict[str, str]]:
    """`clients` concurrent clients for `seconds` (or `count` requests each, still at most
    `seconds`): every outcome, the seconds from the start until the last request ended
    (requests started before the deadline are waited for), and a sample body per failure."""
    outcomes: list[Outcome] = []
    samples: dict[str, str] = {}
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(client_loop(i, port, items, settings, deadline, count, outcomes, samples)
                           for i in range(clients)))
    return outcomes, time.perf_counter() - start, samples


# ---------------------------------------------------------------------------- CPU accounting
def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds, all CPU seconds) of the whole machine so far, from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return (total - idle) / _clock_ticks(), total / _clock_ticks()


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group `pgid`."""
    total = 0
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[2]) == pgid:  # fields[0] is the state; pgrp is the 5th field of the line
            total += int(fields[11]) + int(fields[12])
    return total / _clock_ticks()


def listen_overflows() -> int | None:
    """The kernel's count of connections dropped because a listening socket's accept queue
    was full (TcpExt ListenOverflows, this network namespace), or None where unreadable."""
    try:
        with open("/proc/net/netstat") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table["ListenOverflows"]) if "ListenOverflows" in table else None
    return None


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A `clipadapt serve` subprocess in its own process group."""

    label: str
    src: Path
    args: list[str]
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    info: dict = field(default_factory=dict)
    imported_from: str = ""

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def server_env(src: Path) -> dict:
    """The environment of a server: clipadapt from `src`, threads left to auto."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CLIPADAPT_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "PYTHONPATH")}
    env["PYTHONPATH"] = str(src)
    return env


def start_server(server: Server, checkpoint: Path, ready_timeout: float = 180.0) -> None:
    """Start `clipadapt serve` and wait until /healthz answers 200; a server that exits
    first stops the benchmark with its log."""
    command = [sys.executable, "-c", LAUNCH, "serve", "--checkpoint", str(checkpoint), "--host", HOST,
               "--port", str(server.port), *server.args]
    log = open(server.log, "wb")  # noqa: SIM115 - the child writes to it until it ends
    server.proc = subprocess.Popen(command, env=server_env(server.src), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, cwd=str(server.src.parent))
    log.close()
    deadline = time.monotonic() + ready_timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the {server.label} server exited with {server.proc.returncode} before it was "
                               f"ready:\n{tail(server.log)}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as answer:
                if answer.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {server.label} server did not answer /healthz within {ready_timeout:g} s:\n"
                               f"{tail(server.log)}")
        time.sleep(0.2)
    first = server.log.read_text(errors="replace").splitlines()
    server.imported_from = next((line[len("clipadapt from "):] for line in first
                                 if line.startswith("clipadapt from ")), "?")
    if not Path(server.imported_from).resolve().is_relative_to(server.src.resolve()):
        raise RuntimeError(f"the {server.label} server imported clipadapt from {server.imported_from}, "
                           f"not from {server.src}")
    try:
        with urllib.request.urlopen(server.url + "/api/info", timeout=10) as answer:
            server.info = json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        server.info = {"error": f"/api/info: {exc}"}


def stop_server(server: Server) -> None:
    """SIGTERM to the server's process group, SIGKILL after 10 s."""
    proc = server.proc
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------- git, run, images
def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def add_worktree(ref: str, where: Path) -> tuple[Path, str]:
    """A detached checkout of `ref` at `where`: (its src folder, the commit)."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    git("worktree", "add", "--detach", str(where), commit)
    return where / "src", commit


def remove_worktree(where: Path) -> None:
    for args in (("worktree", "remove", "--force", str(where)), ("worktree", "prune")):
        try:
            git(*args)
        except subprocess.CalledProcessError as exc:
            print(f"note: git {' '.join(args)} failed: {exc.stderr.strip()}", flush=True)


def working_tree_commit() -> str:
    """HEAD, marked '+changes' when src/clipadapt has uncommitted changes."""
    head = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src/clipadapt")
    return head + ("+changes" if dirty else "")


def make_run(src: Path, work: Path) -> Path:
    """The default run folder (MAKE_RUN), trained by the clipadapt of `src`."""
    out = work / "run"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MAKE_RUN, str(work / "gss"), str(out)], env=server_env(src),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"making the run folder failed:\n{proc.stderr[-3000:]}")
    print(f"made the run folder {out} in {time.perf_counter() - started:.0f} s", flush=True)
    return out


def make_images(count: int, size: tuple[int, int] = (640, 480), seed: int = 0, quality: int = 88) -> list[bytes]:
    """`count` JPEGs of street-like scenes (sky gradient, buildings, road, sensor noise) at
    `size`, so decoding costs what a camera-sized photo costs."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)
    width, height = size
    out = []
    for _ in range(count):
        image = Image.new("RGB", size)
        draw = ImageDraw.Draw(image)
        top, bottom = [rng.randint(60, 200) for _ in range(3)], [rng.randint(150, 255) for _ in range(3)]
        horizon = rng.randint(height // 3, height // 2)
        for y in range(horizon):
            t = y / max(1, horizon - 1)
            draw.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
        draw.rectangle([0, horizon, width, height], fill=tuple(rng.randint(40, 110) for _ in range(3)))
        x = 0
        while x < width:  # buildings along the horizon
            w = rng.randint(30, 120)
            h = rng.randint(40, horizon)
            draw.rectangle([x, horizon - h, x + w, horizon + 20], fill=tuple(rng.randint(50, 220) for _ in range(3)))
            for _ in range(rng.randint(2, 10)):  # windows
                wx, wy = rng.randint(x, x + w - 8), rng.randint(horizon - h, horizon)
                draw.rectangle([wx, wy, wx + 6, wy + 8], fill=tuple(rng.randint(0, 255) for _ in range(3)))
            x += w + rng.randint(0, 20)
        draw.polygon([(width * 0.4, height), (width * 0.6, height), (width * 0.52, horizon), (width * 0.48, horizon)],
                     fill=(70, 70, 75))
        image = image.filter(ImageFilter.GaussianBlur(0.8))
        noise = Image.effect_noise(size, 24).convert("RGB")
        image = Image.blend(image, noise, 0.12)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


def read_images(folder: Path) -> list[bytes]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"--image-dir {folder}: no .jpg, .jpeg or .png files")
    return [p.read_bytes() for p in files]


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "os_cpus": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            **{name: version(name) for name in ("torch", "fastapi", "uvicorn", "httpx", "pillow")}}


# ---------------------------------------------------------------------------- measuring
def measure_setting(server: Server, items: list[Payload], clients: int, seconds: float, settings: LoadSettings,
                    count: int | None = None) -> dict:
    """One server x clients: the summary, the CPU the server, this client and everything
    else used meanwhile (in cores), the load average before, and the failure samples."""
    loadavg = " ".join(str(round(x, 2)) for x in os.getloadavg())
    busy0, all0 = machine_busy_seconds()
    server0, own0 = group_cpu_seconds(server.proc.pid), own_cpu_seconds()
    overflows0 = listen_overflows()
    outcomes, elapsed, samples = asyncio.run(run_load(server.port, items, clients, seconds, settings, count))
    busy1, all1 = machine_busy_seconds()
    server_cpu = group_cpu_seconds(server.proc.pid) - server0
    own_cpu = own_cpu_seconds() - own0
    row = {"server": server.label, "clients": clients, **summarize(outcomes, elapsed)}
    row["cpu_cores"] = {"server": round(server_cpu / elapsed, 2), "load_generator": round(own_cpu / elapsed, 2),
                        "other": round(max(0.0, (busy1 - busy0) - server_cpu - own_cpu) / elapsed, 2),
                        "machine_busy": round((busy1 - busy0) / elapsed, 2)}
    # answered requests per CPU second the server spent: what the server costs, less moved by the
    # other programs that share the cores than requests/s
    row["requests_per_server_cpu_s"] = round(row["ok"] / server_cpu, 1) if server_cpu > 0 else None
    row["loadavg_before"] = loadavg
    overflows1 = listen_overflows()
    # connections the kernel dropped at a full accept queue (machine-wide count): resets and 1 s+ connects
    row["listen_overflows"] = None if overflows0 is None or overflows1 is None else overflows1 - overflows0
    if samples:
        row["error_samples"] = samples
    return row


def warm(server: Server, items: list[Payload], clients: int, seconds: float, settings: LoadSettings) -> None:
    """Untimed requests so the first timed one does not pay for first-call setup."""
    outcomes, _, samples = asyncio.run(run_load(server.port, items, clients, seconds, settings))
    kinds = Counter(o.kind for o in outcomes)
    print(f"  warmed {server.label}: {dict(kinds)}", flush=True)
    if not kinds.get("ok"):
        raise RuntimeError(f"the {server.label} server answered no warm-up request correctly: {dict(kinds)} "
                           f"{samples}\n{tail(server.log)}")


def print_row(row: dict) -> None:
    print(f"  {row['server']:>10} x {row['clients']:>3} clients: {row['requests_per_s']} req/s, "
          f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, errors {error_text(row['errors'])}; CPU cores: "
          f"server {row['cpu_cores']['server']}, client {row['cpu_cores']['load_generator']}, "
          f"other {row['cpu_cores']['other']}; listen overflows {row.get('listen_overflows')}", flush=True)


def speedups(rows: list[dict], labels: tuple[str, str] = ("old", "new")) -> list[dict]:
    """Per client count: the median requests/s and p50 of each side and new / old."""
    out = []
    for clients in sorted({r["clients"] for r in rows}):
        sides = {}
        for label in labels:
            mine = [r for r in rows if r["server"] == label and r["clients"] == clients]
            if not mine:
                break
            p50s = [r["p50_ms"] for r in mine if r["p50_ms"] is not None]
            per_cpu = [r["requests_per_server_cpu_s"] for r in mine if r.get("requests_per_server_cpu_s")]
            sides[label] = {"requests_per_s": statistics.median(r["requests_per_s"] for r in mine),
                            "p50_ms": statistics.median(p50s) if p50s else None,
                            "per_cpu": statistics.median(per_cpu) if per_cpu else None}
        if len(sides) < 2:
            continue
        old, new = sides[labels[0]], sides[labels[1]]
        out.append({"clients": clients, f"{labels[0]}_requests_per_s": old["requests_per_s"],
                    f"{labels[1]}_requests_per_s": new["requests_per_s"],
                    "throughput_ratio_new_over_old": round(new["requests_per_s"] / old["requests_per_s"], 2)
                    if old["requests_per_s"] else None,
                    f"{labels[0]}_p50_ms": old["p50_ms"], f"{labels[1]}_p50_ms": new["p50_ms"],
                    "p50_ratio_old_over_new": round(old["p50_ms"] / new["p50_ms"], 2)
                    if old["p50_ms"] and new["p50_ms"] else None,
                    f"{labels[0]}_requests_per_server_cpu_s": old["per_cpu"],
                    f"{labels[1]}_requests_per_server_cpu_s": new["per_cpu"],
                    "per_cpu_ratio_new_over_old": round(new["per_cpu"] / old["per_cpu"], 2)
                    if old["per_cpu"] and new["per_cpu"] else None})
    return out


def merged(rows: list[dict]) -> list[dict]:
    """One line per server x clients (x setting) over the rounds: the medians of the figures,
    the range of requests/s, the failures summed."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["server"], row["clients"], row.get("setting", "")), []).append(row)
    out = []
    for (server, clients, setting), mine in groups.items():
        def med(key, inner=None):
            values = [(r[key][inner] if inner else r[key]) for r in mine]
            values = [v for v in values if v is not None]
            return round(statistics.median(values), 2) if values else None

        errors: Counter = Counter()
        for r in mine:
            errors.update(r["errors"])
        rps = [r["requests_per_s"] for r in mine]
        out.append({"server": server, "clients": clients, "setting": setting, "rounds": len(mine),
                    "requests_per_s": med("requests_per_s"), "requests_per_s_range": [min(rps), max(rps)],
                    "images_per_s": med("images_per_s"), "p50_ms": med("p50_ms"), "p90_ms": med("p90_ms"),
                    "p99_ms": med("p99_ms"), "errors": dict(sorted(errors.items())),
                    "requests": sum(r["requests"] for r in mine),
                    "cpu_cores": {k: med("cpu_cores", k) for k in ("server", "load_generator", "other")},
                    "requests_per_server_cpu_s": med("requests_per_server_cpu_s")})
    return out


def markdown(record: dict) -> str:
    """The medians over the rounds per server x clients, then new / old."""
    def cell(value):
        return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    lines = ["| server | clients | requests/s (range) | images/s | p50 ms | p90 ms | p99 ms | "
             "failed requests (all rounds) | "
             "CPU cores: server / client / other programs | requests per server CPU-s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    measured = record["rows"] + [r for r in record.get("limit_rows", []) if "cpu_cores" in r]
    for row in merged(measured):
        cpu = row["cpu_cores"]
        name = row["server"] + (f" ({row['setting']})" if row["setting"] else "")
        low, high = row["requests_per_s_range"]
        spread = f" ({low:g}-{high:g})" if row["rounds"] > 1 else ""
        failed = error_text(row["errors"]) + (f" of {row['requests']}" if row["errors"] else "")
        lines.append(f"| {name} | {row['clients']} | {cell(row['requests_per_s'])}{spread} | "
                     f"{cell(row['images_per_s'])} | "
                     f"{cell(row['p50_ms'])} | {cell(row['p90_ms'])} | {cell(row['p99_ms'])} | {failed} | "
                     f"{cell(cpu['server'])} / {cell(cpu['load_generator'])} / {cell(cpu['other'])} | "
                     f"{cell(row['requests_per_server_cpu_s'])} |")
    if record.get("speedup"):
        lines += ["", "| clients | old requests/s | new requests/s | new / old | old p50 ms | new p50 ms | "
                  "requests per server CPU-s, new / old |", "|---|---|---|---|---|---|---|"]
        for s in record["speedup"]:
            lines.append(f"| {s['clients']} | {cell(s['old_requests_per_s'])} | {cell(s['new_requests_per_s'])} | "
                         f"{cell(s['throughput_ratio_new_over_old'])}x | {cell(s['old_p50_ms'])} | "
                         f"{cell(s['new_p50_ms'])} | {cell(s.get('per_cpu_ratio_new_over_old'))}x |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-ref", default=OLD_REF, help="commit of the old server (default: %(default)s)")
    parser.add_argument("--new-ref", default=None, help="commit of the new server (default: the working tree)")
    parser.add_argument("--old-args", default="", help="extra `clipadapt serve` options of the old server")
    parser.add_argument("--new-args", default="", help="extra `clipadapt serve` options of the new server, "
                                                       "with '=': --new-args=\"--batch-size 4 --no-pad-batches\"")
    parser.add_argument("--checkpoint", type=Path, default=None, help="run folder to serve (default: make one)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients per setting, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per setting (and the cap with --requests)")
    parser.add_argument("--requests", type=int, default=None, help="requests per client instead of a duration")
    parser.add_argument("--rounds", type=int, default=3,
                        help="times each setting is measured, the servers in turn (alternating who goes first)")
    parser.add_argument("--warmup", type=float, default=3.0, help="untimed seconds per server before measuring")
    parser.add_argument("--images", type=int, default=8, help="procedural 640x480 JPEGs the clients cycle through")
    parser.add_argument("--image-dir", type=Path, default=None, help="use these .jpg/.png files instead")
    parser.add_argument("--images-per-request", type=int, default=1,
                        help="1: the image as the raw body; more: multipart fields 'image'")
    parser.add_argument("--timeout", type=float, default=60.0, help="client seconds before a request is a timeout")
    parser.add_argument("--no-retry-after", action="store_true",
                        help="after a 503 send the next request at once instead of waiting Retry-After")
    parser.add_argument("--header", action="append", default=[], help="'Name: value' sent with every request "
                                                                      "(e.g. an API key), repeatable")
    parser.add_argument("--limit-args", default="--queue 2",
                        help="options of the above-the-queue-limit row (empty: no such row)")
    parser.add_argument("--limit-servers", default="old,new", help="servers measured above their queue limit")
    parser.add_argument("--limit-clients", type=int, default=32)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between settings")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json")
    parser.add_argument("--table", type=Path, default=None, help="only print the tables of an earlier record")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return 0
    clients = [int(x) for x in args.clients.split(",") if x.strip()]
    headers = {}
    for text in args.header:
        name, sep, value = text.partition(":")
        if not sep:
            raise SystemExit(f"--header {text!r}: write it as 'Name: value'")
        headers[name.strip()] = value.strip()
    settings = LoadSettings(timeout=args.timeout, honor_retry_after=not args.no_retry_after, headers=headers)
    record: dict = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(),
                    "command": "python benchmarks/serve_load.py "
                               + shlex.join(argv if argv is not None else sys.argv[1:]),
                    "settings": {"clients": clients, "seconds": args.seconds, "requests_per_client": args.requests,
                                 "rounds": args.rounds, "warmup_s": args.warmup, "timeout_s": args.timeout,
                                 "retry_after_honored": settings.honor_retry_after,
                                 "images_per_request": args.images_per_request,
                                 "old_args": args.old_args, "new_args": args.new_args, "limit_args": args.limit_args,
                                 "limit_clients": args.limit_clients, "CLIPADAPT_THREADS": "unset (auto)"},
                    "note": "Client and servers share this machine's cores: the load generator (one asyncio "
                            "thread) takes CPU from the server it measures; cpu_cores says how much."}
    servers: list[Server] = []
    worktrees: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        work = Path(tmp)
        try:
            old_src, old_commit = add_worktree(args.old_ref, work / "old")
            worktrees.append(work / "old")
            if args.new_ref:
                new_src, new_commit = add_worktree(args.new_ref, work / "new")
                worktrees.append(work / "new")
            else:
                new_src, new_commit = ROOT / "src", working_tree_commit()
            record["commits"] = {"old": old_commit, "new": new_commit,
                                 "new_source": f"--new-ref {args.new_ref}" if args.new_ref else "working tree",
                                 "head": git("rev-parse", "HEAD")}
            checkpoint = args.checkpoint.resolve() if args.checkpoint else make_run(new_src, work)
            record["checkpoint"] = str(args.checkpoint) if args.checkpoint else \
                "made here: CLIP-MHAdapter, embedded tiny CLIP, 8 synthetic GSS attributes, 1 epoch on 64 images"
            images = read_images(args.image_dir) if args.image_dir else make_images(args.images)
            items = payloads(images, args.images_per_request)
            record["images"] = {"count": len(images), "source": str(args.image_dir or "procedural 640x480 JPEG"),
                                "bytes_mean": round(statistics.fmean(len(b) for b in images))}
            for label, src, extra in (("old", old_src, args.old_args), ("new", new_src, args.new_args)):
                server = Server(label, src, shlex.split(extra), free_port(), work / f"{label}.log")
                servers.append(server)
                start_server(server, checkpoint)
                print(f"{label} server on {server.url} (clipadapt from {server.imported_from}), "
                      f"limits {server.info.get('limits')}", flush=True)
            record["servers"] = {s.label: {"args": s.args, "info": s.info, "imported_from": s.imported_from}
                                 for s in servers}
            for server in servers:
                warm(server, items, min(8, max(clients)), args.warmup, settings)
            rows = []
            for n in clients:
                for r in range(args.rounds):
                    for server in (servers if r % 2 == 0 else servers[::-1]):
                        time.sleep(args.pause)
                        row = measure_setting(server, items, n, args.seconds, settings, args.requests)
                        row["round"] = r
                        print_row(row)
                        rows.append(row)
            record["rows"] = rows
            record["speedup"] = speedups(rows)
            for server in servers:
                stop_server(server)
            record["limit_rows"] = []
            limit_args = shlex.split(args.limit_args)
            if limit_args:
                sources = {"old": (old_src, args.old_args), "new": (new_src, args.new_args)}
                for label in [x.strip() for x in args.limit_servers.split(",") if x.strip() in sources]:
                    src, extra = sources[label]
                    server = Server(label, src, shlex.split(extra) + limit_args, free_port(),
                                    work / f"{label}-limit.log")
                    servers.append(server)
                    try:
                        start_server(server, checkpoint)
                    except RuntimeError as exc:
                        print(f"  the {label} server with {args.limit_args!r} did not start: {exc}", flush=True)
                        record["limit_rows"].append({"server": label, "setting": args.limit_args,
                                                     "error": str(exc)[-2000:]})
                        continue
                    warm(server, items, 1, min(args.warmup, 1.0), settings)
                    time.sleep(args.pause)
                    row = measure_setting(server, items, args.limit_clients, args.seconds, settings, args.requests)
                    row["setting"] = args.limit_args
                    row["limits"] = server.info.get("limits")
                    print_row(row)
                    record["limit_rows"].append(row)
                    stop_server(server)
        finally:
            for server in servers:
                stop_server(server)
            for where in worktrees:
                remove_worktree(where)
        for server in servers:  # what each server said last (warnings, its shutdown), before the folder goes
            key = server.label + (" limit" if server.log.name.endswith("-limit.log") else "")
            record.setdefault("log_tails", {})[key] = tail(server.log, 8).splitlines()
    table = markdown(record)
    record["table_md"] = table
    print()
    print(table)
    print("\n(load generator and servers share the same cores; 'CPU cores' is what each used meanwhile)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
