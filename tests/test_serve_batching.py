"""`clipadapt serve`'s dynamic batching on a real server: concurrent answers equal the answers
alone bit for bit, requests really share forwards, a request larger than the batch is split,
and a full queue or a long wait is a quick 503, never a hang."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from test_report_support import make_task, save_run
from test_serve_support import Running, hold_forwards, multipart, request

from clipadapt.methods import build_method
from clipadapt.serve import ServedModel, ServeSettings
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec

CLIENTS = 32


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, micro_backbone) -> ServedModel:
    """A calibrated CLIP-MHAdapter run (its last backbone block computes [CLS] alone: the pass
    whose rounding depends on the torch thread that computes a row, see serve/forwards.py)."""
    method = build_method("mhadapter", micro_backbone, make_task())
    method.set_temperatures([3.0, 0.5])
    return ServedModel(save_run(tmp_path_factory.mktemp("batching") / "calibrated", method))


@pytest.fixture(scope="module")
def multilabel(tmp_path_factory, micro_backbone) -> ServedModel:
    """A multi-label PromptPAR run on the micro backbone (its answers depend on the threshold)."""
    task = TaskSpec((Attribute("Hat", BINARY_CLASSES, template="A pedestrian wearing a hat"),
                     Attribute("Female", BINARY_CLASSES, template="A woman or girl")), multilabel=True)
    params = {"fusion_width": 32, "fusion_heads": 4, "global_prompts": 2, "group_prompts": 2, "text_prompts": 2,
              "drop_path": 0.0}
    run = save_run(tmp_path_factory.mktemp("batching") / "par", build_method("promptpar", micro_backbone, task, params))
    return ServedModel(run)


def picture(i: int) -> tuple[str, bytes]:
    """Image i: random pixels, sizes and formats varied (every 4th a JPEG large enough for the
    reduced-scale decode)."""
    rng = np.random.default_rng(i)
    jpeg = i % 4 == 3
    size = (300, 260) if jpeg else (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG" if jpeg else "PNG")
    return f"img{i}.{'jpg' if jpeg else 'png'}", buffer.getvalue()


def ask(url: str, files: list[tuple[str, bytes]], threshold: float | None) -> dict:
    query = "" if threshold is None else f"?threshold={threshold}"
    body, headers = multipart(files)
    status, answer = request(url + "/api/predict" + query, body, headers)
    assert status == 200, answer
    return answer


def metric_families(url: str) -> dict:
    status, text = request(url + "/metrics")
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(text)}


def largest_batch(url: str) -> float:
    """The largest batch the batch-size histogram has seen (its smallest bucket holding every batch)."""
    family = metric_families(url)["clipadapt_batch_images"]
    buckets = [(float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")]
    count = next(s.value for s in family.samples if s.name.endswith("_count"))
    return min(le for le, n in buckets if n == count)


@pytest.mark.parametrize("which", ["calibrated", "multilabel"])
def test_32_concurrent_clients_each_get_their_answer_alone_exactly(which, request):
    """Different images, thresholds and image counts, released together: every answer equals,
    float for float, what the same request gets alone from the same server. Two forward
    threads whatever torch's own count, so the batch is cut into parallel forwards too."""
    served = request.getfixturevalue(which)
    requests = []
    for i in range(CLIENTS):
        files = [picture(i)] + ([picture(100 + i)] if i % 5 == 0 else [])  # some with two images
        requests.append((files, [None, 0.3, 0.5, 0.62][i % 4]))
    settings = ServeSettings(batch_size=8, batch_wait_ms=20.0, queue=CLIENTS * 2, max_batch=4)
    with Running(served, settings, forward_threads=2) as running:
        running.ready()
        alone = [ask(running.url, files, cut) for files, cut in requests]
        assert largest_batch(running.url) <= 2  # one request at a time: no sharing yet
        barrier = threading.Barrier(CLIENTS)

        def together(k: int) -> dict:
            barrier.wait()
            return ask(running.url, *requests[k])

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(together, range(CLIENTS)))
        shared = largest_batch(running.url)
    wrong = [k for k in range(CLIENTS) if answers[k] != alone[k]]
    assert not wrong, f"{len(wrong)} of {CLIENTS} concurrent answers differ from the answer alone: {wrong}"
    assert shared > 2, f"under {CLIENTS} concurrent clients no forward held more than {shared:g} images"
    if served.multilabel:
        cuts = {a["predictions"][0]["threshold"] for a in answers}
        assert cuts == {0.5, 0.3, 0.62}  # None: the run's own threshold, 0.5


def test_a_request_larger_than_the_batch_is_split_and_answers_as_alone(model_run):
    files = [picture(i) for i in range(5)]
    settings = ServeSettings(batch_size=2, batch_wait_ms=1.0)
    with Running(model_run, settings) as running:
        together = ask(running.url, files, None)["predictions"]
        one_by_one = [ask(running.url, [f], None)["predictions"][0] for f in files]
        assert together == one_by_one
        family = metric_families(running.url)["clipadapt_batch_images"]
        count = next(s.value for s in family.samples if s.name.endswith("_count"))
        assert count >= 3 + 5  # the five images took three forwards, then one each


def test_without_padding_answers_agree_to_float32_rounding(model_run):
    files = [picture(i) for i in range(3)]
    with Running(model_run, ServeSettings(pad_batches=False)) as running:
        together = ask(running.url, files, None)["predictions"]
        alone = [ask(running.url, [f], None)["predictions"][0] for f in files]
    for got, want in zip(together, alone):
        for name, attribute in want["attributes"].items():
            for cls, p in attribute["probabilities"].items():
                assert got["attributes"][name]["probabilities"][cls] == pytest.approx(p, rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def model_run(tmp_path_factory, micro_backbone) -> ServedModel:
    from test_report_support import make_run

    return ServedModel(make_run(tmp_path_factory.mktemp("split") / "run", micro_backbone, evaluated=False))


def in_thread(fn):
    """Start fn() in a thread; its result (or exception) comes from the returned function."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result(timeout: float = 30.0):
        thread.join(timeout)
        if "error" in out:
            raise out["error"]
        return out["value"]
    return result


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_a_full_queue_answers_503_at_once_not_after_a_timeout(model_run, monkeypatch):
    hold, release, entered = hold_forwards(model_run, monkeypatch)
    settings = ServeSettings(batch_size=1, workers=1, queue=2, request_timeout=20.0)
    image = picture(0)[1]
    with Running(model_run, settings) as running:
        running.ready()
        hold.set()
        first = in_thread(lambda: request(running.url + "/api/predict", image))
        assert entered.wait(10)  # the only forward is busy
        waiting = [in_thread(lambda: request(running.url + "/api/predict", image)) for _ in range(2)]
        wait_until(lambda: len(running.app.state.batcher._waiting) == 2)
        started = time.monotonic()
        status, answer, headers = request(running.url + "/api/predict", image, with_headers=True)
        refused_in = time.monotonic() - started
        assert status == 503 and "busy" in answer["error"] and headers["Retry-After"] == "1"
        assert refused_in < 2.0, f"the refusal took {refused_in:.1f} s"
        queued = metric_families(running.url)["clipadapt_queue_requests"].samples[0].value
        release.set()
        assert [first()[0]] + [w()[0] for w in waiting] == [200, 200, 200]
    assert queued == 2


def test_a_request_that_waits_past_the_timeout_answers_503(model_run, monkeypatch):
    hold, release, entered = hold_forwards(model_run, monkeypatch)
    settings = ServeSettings(batch_size=1, queue=4, request_timeout=1.0)
    image = picture(1)[1]
    with Running(model_run, settings) as running:
        running.ready()
        hold.set()
        first = in_thread(lambda: request(running.url + "/api/predict", image))
        assert entered.wait(10)
        started = time.monotonic()
        status, answer = request(running.url + "/api/predict", image)
        waited = time.monotonic() - started
        release.set()
        assert first()[0] == 200  # the one in the forward is answered
    assert status == 503 and "no forward came free within 1 s" in answer["error"]
    assert 0.8 < waited < 6


def test_serving_leaves_torchs_thread_count_as_it_was(model_run):
    import torch

    before = torch.get_num_threads()
    with Running(model_run, ServeSettings(), forward_threads=2) as running:
        running.ready()
        assert ask(running.url, [picture(0)], None)["predictions"][0]["ok"]
    seen = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert torch.get_num_threads() == before and seen == [before]  # this thread, and threads started later
