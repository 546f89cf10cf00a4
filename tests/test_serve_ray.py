"""`clipadapt serve --engine ray`: two replicas of a tiny run on a local Ray instance answer,
through Ray Serve's proxy, exactly what one process answers, and keys guard them the same.

Exact, not within a tolerance: with padding (the default) an image's answer is the answer
it gets alone in a forward pass of a fixed number of rows on one torch thread, and that
number is ceil(batch size / threads), so a replica (1 CPU: 1 thread) and the in-process
app given 1 forward thread run the same passes (docs/serve.md, Ray Serve)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from local_ray import local_ray
from test_report_support import make_run
from test_serve_support import Running, request
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.serve import ServedModel, ServeSettings

KEY = "ray-test-key"
SETTINGS = ServeSettings(batch_size=4, batch_wait_ms=2.0)


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'clipadapt[serve-ray]')")
    yield from local_ray(tmp_path_factory, "ray is not installed (pip install 'clipadapt[serve-ray]')")


def probabilities(answer: dict) -> dict:
    """{attribute: {class: probability}} of a one-image answer."""
    (result,) = answer["predictions"]
    return {name: got["probabilities"] for name, got in result["attributes"].items()}


def test_two_replicas_answer_as_one_process_and_check_keys(ray_instance, tmp_path, micro_backbone):
    from clipadapt.serve.ray_serve import REPLICA_HEADER, ReplicaShape, deploy, undeploy

    run = make_run(tmp_path / "run", micro_backbone, figures=False)
    images = sorted((run / "images").glob("*.png"))
    with Running(ServedModel(run), SETTINGS, [KEY], forward_threads=1) as local:
        local.ready()
        expected = [probabilities(request(local.url + "/api/predict", p.read_bytes(), {"X-API-Key": KEY})[1])
                    for p in images]

    url = deploy(run, SETTINGS, [KEY], ReplicaShape(replicas=2, cpus=1.0, gpus=0.0), port=0)
    try:
        assert request(url + "/readyz") == (200, {"status": "ready"})  # deploy returns once both warmed up
        status, answer = request(url + "/api/predict", images[0].read_bytes())
        assert status == 401 and "API key" in answer["error"]

        def ask(path):
            return request(url + "/api/predict", path.read_bytes(), {"Authorization": f"Bearer {KEY}"},
                           with_headers=True)

        # concurrent requests, so the proxy has reason to use both replicas
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, images * 3))
        by_image: dict[int, list] = {}
        for i, ((status, answer, _), want) in enumerate(zip(answers, expected * 3)):
            assert status == 200
            got = probabilities(answer)
            by_image.setdefault(i % len(images), []).append(got)
            # another process: equal to float32 rounding (bit for bit when run alone; a process
            # whose earlier work chose other CPU kernels differs in the last bits)
            gap = max(abs(got[a][c] - want[a][c]) for a in want for c in want[a])
            assert gap <= 1e-6, gap
        # the replicas are alike: whichever answers, an image gets the same probabilities, bit for bit
        assert all(all(got == answers_of[0] for got in answers_of) for answers_of in by_image.values())
        replicas = {headers[REPLICA_HEADER] for _, _, headers in answers}
        assert len(replicas) == 2, replicas
    finally:
        undeploy()


def test_ray_options_without_the_ray_engine_are_refused(tmp_path):
    for extra in (["--replicas", "2"], ["--ray-address", "auto"]):
        result = CliRunner().invoke(app, ["serve", "-c", str(tmp_path), *extra])
        assert result.exit_code != 0 and "need --engine ray" in result.output, result.output
    result = CliRunner().invoke(app, ["serve", "-c", str(tmp_path), "--engine", "ray", "--device", "cuda:1"])
    assert result.exit_code != 0 and "auto, cpu or cuda" in result.output, result.output


class FakeCluster:
    """What `replica_shape` reads of a connected Ray: the cluster's resources and its nodes."""

    def __init__(self, cpus_per_node: list[float], gpus: float = 0.0):
        self.cpus, self.gpus = cpus_per_node, gpus

    def cluster_resources(self) -> dict:
        return {"CPU": sum(self.cpus), **({"GPU": self.gpus} if self.gpus else {})}

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": {"CPU": c}} for c in self.cpus]


def test_replica_shares_of_the_cluster():
    from clipadapt.errors import ClipAdaptError
    from clipadapt.serve.ray_serve import ReplicaShape, replica_shape

    assert replica_shape(FakeCluster([8]), 2) == ReplicaShape(2, 4.0, 0.0)
    assert replica_shape(FakeCluster([8]), 3) == ReplicaShape(3, 2.0, 0.0)  # whole CPUs: torch threads
    assert replica_shape(FakeCluster([2]), 4) == ReplicaShape(4, 0.5, 0.0)  # more replicas than CPUs: all fit
    assert replica_shape(FakeCluster([4, 4]), 1) == ReplicaShape(1, 4.0, 0.0)  # one node's worth at most
    assert replica_shape(FakeCluster([8], gpus=2), None) == ReplicaShape(2, 4.0, 1.0)  # one per GPU
    assert replica_shape(FakeCluster([8], gpus=2), 4) == ReplicaShape(4, 2.0, 0.5)
    assert replica_shape(FakeCluster([8], gpus=2), 2, "cpu") == ReplicaShape(2, 4.0, 0.0)
    with pytest.raises(ClipAdaptError, match="no GPU"):
        replica_shape(FakeCluster([8]), 2, "cuda")


def test_a_missing_ray_serve_is_one_clear_error(monkeypatch):
    import sys

    from clipadapt.errors import ClipAdaptError
    from clipadapt.serve.ray_serve import require_ray_serve

    monkeypatch.setitem(sys.modules, "ray.serve", None)  # `from ray import serve` fails as if not installed
    if "ray" in sys.modules:
        monkeypatch.delattr(sys.modules["ray"], "serve", raising=False)
    with pytest.raises(ClipAdaptError, match=r"pip install 'clipadapt\[serve-ray\]'"):
        require_ray_serve()
