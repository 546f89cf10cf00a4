"""benchmarks/serve_load.py's own arithmetic and client, without clipadapt's server: its
percentiles and error counts on made-up outcomes, and one short run (about a second, no
timing checked) against a fake HTTP server on loopback whose answers it counts itself."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import random
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import serve_load as sl  # noqa: E402


def test_percentiles_match_numpy_linear_interpolation():
    rng = random.Random(0)
    for n in (1, 2, 3, 10, 101, 1000):
        values = [rng.lognormvariate(4, 1) for _ in range(n)]
        for q in (0, 50, 90, 99, 100):
            assert sl.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
    assert sl.percentile([], 50) is None
    assert sl.percentile([5.0, 1.0, 3.0], 50) == 3.0  # unsorted input


def test_summary_counts_only_answered_requests_and_every_failure_by_kind():
    outcomes = [sl.Outcome(0.0, (i + 1) / 1000, "ok", images=2) for i in range(100)]  # 1 .. 100 ms
    outcomes += [sl.Outcome(0.0, 0.002, "503")] * 7 + [sl.Outcome(0.0, 60.0, "timeout")] * 2
    outcomes += [sl.Outcome(0.0, 1.03, "reset"), sl.Outcome(0.0, 0.0, "connect"), sl.Outcome(0.0, 0.01, "bad_answer")]
    random.Random(1).shuffle(outcomes)
    s = sl.summarize(outcomes, elapsed=4.0)
    assert s["requests"] == 112 and s["ok"] == 100 and s["error_count"] == 12
    assert s["errors"] == {"503": 7, "bad_answer": 1, "connect": 1, "reset": 1, "timeout": 2}
    assert s["requests_per_s"] == 25.0 and s["images_per_s"] == 50.0 and s["attempts_per_s"] == 28.0
    # the failures' latencies (a 60 s timeout, a 2 ms 503) do not enter the percentiles
    assert (s["p50_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"]) == (50.5, 90.1, 99.0, 100.0)
    assert s["refused_p50_ms"] == 2.0
    assert sl.error_text(s["errors"]).startswith("503: 7, bad_answer: 1") and sl.error_text({}) == "0"
    empty = sl.summarize([sl.Outcome(0.0, 0.1, "503")], elapsed=1.0)
    assert empty["p50_ms"] is None and empty["requests_per_s"] == 0 and empty["errors"] == {"503": 1}


def test_an_answer_is_ok_only_with_one_successful_prediction_per_image():
    good = json.dumps({"predictions": [{"ok": True}, {"ok": True}]}).encode()
    assert sl.judge(200, {}, good, images=2) == ("ok", None)
    assert sl.judge(200, {}, good, images=1)[0] == "bad_answer"
    assert sl.judge(200, {}, json.dumps({"predictions": [{"ok": False, "error": "x"}]}).encode(), 1)[0] == "bad_answer"
    assert sl.judge(200, {}, b"<html>", 1)[0] == "bad_answer"
    assert sl.judge(503, {"retry-after": "1"}, b"{}", 1) == ("503", 1.0)
    assert sl.judge(401, {}, b"{}", 1) == ("401", None)


def test_multipart_payloads_carry_the_images_in_order():
    images = [bytes([i]) * (100 + i) for i in range(3)]
    assert [p.body for p in sl.payloads(images, 1)] == images
    batch = sl.payloads(images, 2)[2]  # starts at the last image and wraps around
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {batch.content_type}\r\n\r\n".encode() + batch.body)
    parts = list(message.iter_parts())
    assert batch.images == 2 and [p.get_content() for p in parts] == [images[2], images[0]]
    assert all(p.get_param("name", header="content-disposition") == "image" for p in parts)


class FakeServe(BaseHTTPRequestHandler):
    """POST /api/predict: 200 with one prediction per image, every 4th request a 503;
    POST /slow: answers after 0.5 s. Counts what it sent in server.sent."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert body  # the image arrived
        if self.path == "/slow":
            time.sleep(0.5)
        with self.server.lock:
            self.server.seen += 1
            status = 503 if self.server.seen % 4 == 0 else 200
            self.server.sent[status] = self.server.sent.get(status, 0) + 1
        answer = json.dumps({"predictions": [{"ok": True}]} if status == 200 else {"error": "busy"}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        if status == 503:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture(params=["HTTP/1.1", "HTTP/1.0"])  # kept-alive connections, and one connection per request
def fake_server(request):
    handler = type("Handler", (FakeServe,), {"protocol_version": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.handle_error = lambda *args: None  # a timed-out client's broken pipe is expected here
    server.lock, server.seen, server.sent = threading.Lock(), 0, {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_short_run_counts_exactly_what_the_server_sent(fake_server):
    port = fake_server.server_address[1]
    items = sl.payloads([b"\xff\xd8\xff" + bytes(2000), b"\xff\xd8\xff" + bytes(3000)], 1)
    outcomes, elapsed, samples = asyncio.run(sl.run_load(port, items, clients=4, seconds=0.4,
                                                         settings=sl.LoadSettings(timeout=5.0)))
    s = sl.summarize(outcomes, elapsed)
    assert s["ok"] == fake_server.sent[200] > 0 and s["errors"] == {"503": fake_server.sent[503]}
    assert samples["503"] == '{"error": "busy"}' and elapsed >= 0.4
    # --requests: an exact count per client
    fake_server.sent.clear()
    outcomes, _, _ = asyncio.run(sl.run_load(port, items, clients=3, seconds=30, count=5,
                                             settings=sl.LoadSettings(timeout=5.0)))
    assert len(outcomes) == 15 == sum(fake_server.sent.values())


def test_timeouts_and_refused_connections_are_counted_not_raised(fake_server):
    items = sl.payloads([b"\xff\xd8\xff" + bytes(100)], 1)
    outcomes, _, _ = asyncio.run(sl.run_load(fake_server.server_address[1], items, clients=2, seconds=0.2,
                                             settings=sl.LoadSettings(path="/slow", timeout=0.1)))
    assert outcomes and {o.kind for o in outcomes} == {"timeout"}
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    outcomes, _, samples = asyncio.run(sl.run_load(closed, items, clients=1, seconds=0.2,
                                                   settings=sl.LoadSettings(timeout=1.0)))
    assert outcomes and {o.kind for o in outcomes} == {"connect"} and "connect" in samples
    assert len(outcomes) <= 6  # a pause after each refusal: no busy loop


def test_speedups_and_table_pair_the_two_servers_by_client_count():
    def row(server, clients, rps, p50):
        return {"server": server, "clients": clients, "requests": 100, "requests_per_s": rps, "images_per_s": rps,
                "p50_ms": p50, "p90_ms": p50, "p99_ms": p50, "errors": {}, "requests_per_server_cpu_s": rps,
                "cpu_cores": {"server": 1, "load_generator": 0.1, "other": 0}}

    rows = [row("old", 1, 20.0, 50.0), row("new", 1, 30.0, 40.0), row("old", 8, 20.0, 400.0),
            row("new", 8, 80.0, 100.0), row("new", 8, 70.0, 120.0), row("new", 8, 90.0, 110.0)]  # 3 rounds of new x 8
    ratios = {s["clients"]: s["throughput_ratio_new_over_old"] for s in sl.speedups(rows)}
    assert ratios == {1: 1.5, 8: 4.0}  # the median round
    limit = [{**row("new", 32, 5.0, 9.0), "setting": "--queue 2", "errors": {"503": 3}}]
    table = sl.markdown({"rows": rows, "speedup": sl.speedups(rows), "limit_rows": limit})
    assert "| new | 8 | 80 (70-90) | 80 | 110 |" in table  # medians over the rounds, the range of requests/s
    assert "| new (--queue 2) | 32 | 5 | 5 |" in table and "503: 3 of 100" in table
    assert "| 8 | 20 | 80 | 4x | 400 | 110 | 4x |" in table
