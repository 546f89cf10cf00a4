"""`clipadapt serve`'s /metrics (Prometheus text, a registry per app), its probes (/healthz
live, /readyz ready once warmed up) and its API description (/openapi.json)."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_report_support import make_run
from test_serve_support import Running, hold_forwards, multipart, png_bytes, request

from clipadapt.serve import ServedModel, ServeSettings, create_app

ROUTES = {"/", "/healthz", "/readyz", "/api/info", "/api/predict", "/metrics"}


@pytest.fixture(scope="module")
def model(tmp_path_factory, micro_backbone) -> ServedModel:
    return ServedModel(make_run(tmp_path_factory.mktemp("metrics") / "run", micro_backbone, evaluated=False))


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family, sample: str, **labels) -> float:
    found = [s.value for s in family.samples if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (sample, labels, family.samples)
    return found[0]


def test_metrics_count_requests_batches_images_and_the_queue(model):
    with Running(model, ServeSettings(batch_wait_ms=1.0)) as running:
        running.ready()
        for _ in range(3):
            assert request(running.url + "/api/predict", png_bytes())[0] == 200
        body, headers = multipart([("a.png", png_bytes()), ("b.png", png_bytes((30, 30)))])
        assert request(running.url + "/api/predict", body, headers)[0] == 200
        assert request(running.url + "/api/predict", b"not an image")[0] == 415
        assert request(running.url + "/no/such/page")[0] == 404
        status, text, headers = request(running.url + "/metrics", with_headers=True)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    found = families(text)
    requests = found["clipadapt_http_requests"]
    assert value(requests, "clipadapt_http_requests_total", route="/api/predict", method="POST", status="200") == 4
    assert value(requests, "clipadapt_http_requests_total", route="/api/predict", method="POST", status="415") == 1
    assert value(requests, "clipadapt_http_requests_total", route="other", method="GET", status="404") == 1  # no path labels
    latency = found["clipadapt_http_request_duration_seconds"]
    assert value(latency, "clipadapt_http_request_duration_seconds_count", route="/api/predict") == 5
    assert 0 < value(latency, "clipadapt_http_request_duration_seconds_sum", route="/api/predict") < 60
    batches = found["clipadapt_batch_images"]
    assert 4 <= value(batches, "clipadapt_batch_images_count") <= 5  # the warm-up is not counted
    assert value(batches, "clipadapt_batch_images_sum") == 5
    assert value(found["clipadapt_images_predicted"], "clipadapt_images_predicted_total") == 5
    assert 0 < value(found["clipadapt_images_per_second"], "clipadapt_images_per_second") <= 5 / 10  # 5 in the last 10 s
    assert value(found["clipadapt_queue_requests"], "clipadapt_queue_requests") == 0
    assert value(found["clipadapt_ready"], "clipadapt_ready") == 1
    assert value(found["clipadapt_forward_duration_seconds"], "clipadapt_forward_duration_seconds_count") >= 4


def test_two_apps_in_one_process_keep_their_own_metrics(model):
    first, second = create_app(model), create_app(model)
    with TestClient(first) as a, TestClient(second) as b:
        assert a.get("/healthz").status_code == 200
        assert a.get("/healthz").status_code == 200
        assert b.get("/healthz").status_code == 200
        counted_a = families(a.get("/metrics").text)["clipadapt_http_requests"]
        counted_b = families(b.get("/metrics").text)["clipadapt_http_requests"]
    assert value(counted_a, "clipadapt_http_requests_total", route="/healthz", method="GET", status="200") == 2
    assert value(counted_b, "clipadapt_http_requests_total", route="/healthz", method="GET", status="200") == 1


def test_readyz_waits_for_the_warm_up_and_healthz_does_not(model, monkeypatch):
    hold, release, entered = hold_forwards(model, monkeypatch)
    hold.set()  # the warm-up forward itself waits
    with Running(model, ServeSettings()) as running:
        assert entered.wait(10)
        assert request(running.url + "/healthz") == (200, {"status": "ok"})
        status, answer, headers = request(running.url + "/readyz", with_headers=True)
        assert status == 503 and "warming up" in answer["error"] and headers["Retry-After"] == "1"
        assert "clipadapt_ready 0.0" in request(running.url + "/metrics")[1]
        release.set()
        running.ready()
        assert request(running.url + "/readyz") == (200, {"status": "ready"})


def test_the_batcher_starts_on_the_first_request_without_a_startup_event(model):
    """A host that sends no lifespan events (or a test client outside `with`) still gets a
    working service: the first request starts the batcher in its own event loop."""
    app = create_app(model)
    with TestClient(app) as client:  # one event loop for all requests; lifespan runs
        pass
    client = TestClient(app)  # no lifespan: each request in a loop of its own
    assert client.post("/api/predict", content=png_bytes()).status_code == 200
    assert client.post("/api/predict", content=png_bytes()).status_code == 200


def test_openapi_lists_the_routes_and_the_key_schemes(model):
    with TestClient(create_app(model)) as client:
        spec = client.get("/openapi.json").json()
        assert ROUTES - {"/"} <= set(spec["paths"]) and "post" in spec["paths"]["/api/predict"]
        body = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
        assert {"image/*", "multipart/form-data"} <= set(body)
        assert "securitySchemes" not in spec.get("components", {})
        assert client.get("/docs").status_code == 200
    with TestClient(create_app(model, keys=["k-123456"])) as client:
        schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}


def test_concurrent_scrapes_and_predictions_do_not_clash(model):
    with Running(model, ServeSettings(batch_wait_ms=2.0)) as running:
        running.ready()
        errors: list = []

        def work(i: int):
            try:
                path, data = ("/metrics", None) if i % 2 else ("/api/predict", png_bytes())
                assert request(running.url + path, data)[0] == 200
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        families(request(running.url + "/metrics")[1])  # still parses
