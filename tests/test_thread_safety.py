"""One method object called from many threads at once answers, in every thread, exactly what a
call made alone answers (issue 27): a calibrated run's temperatures and microCLIP's own
LayerNorms are applied in every thread, and a method sharing microCLIP's backbone keeps its own.
(Serving with several predictions in flight: tests/test_serve.py.)"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from clipadapt.backbone import ImageFeatures, create_backbone
from clipadapt.methods import build_method
from clipadapt.task import Attribute, TaskSpec

THREADS = 8
ROUNDS = 4  # calls per thread: a race that needs one unlucky interleaving gets many chances


def all_at_once(calls: list, rounds: int = ROUNDS) -> list[list]:
    """calls[i]() from len(calls) threads released together by a barrier, `rounds` times each:
    per thread, the list of its results."""
    barrier = threading.Barrier(len(calls))

    def work(call):
        barrier.wait()
        return [call() for _ in range(rounds)]

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(work, calls))


def probabilities(logits: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.softmax(z, -1) for z in logits]


def assert_all_equal(results: list[list], expected: list[torch.Tensor], what: str) -> None:
    """Every result of every thread equals `expected` bit for bit (torch.equal), or a message
    counting the calls that did not."""
    wrong = [(t, r) for t, per_thread in enumerate(results) for r, got in enumerate(per_thread)
             if not all(torch.equal(g, e) for g, e in zip(got, expected))]
    assert not wrong, (f"{what}: {len(wrong)} of {sum(map(len, results))} concurrent calls differ from the "
                       f"sequential answer (thread, call): {wrong[:6]}")


@pytest.fixture
def calibrated(micro_backbone, two_attribute_task):
    method = build_method("mhadapter", micro_backbone, two_attribute_task).eval()
    method.set_temperatures([2.0, 0.5])
    return method


def test_a_calibrated_method_from_8_threads_gives_the_sequential_probabilities_on_features(calibrated):
    torch.manual_seed(0)
    bb = calibrated.backbone
    features = ImageFeatures(torch.randn(4, bb.num_patches, bb.width), torch.randn(4, bb.embed_dim))

    def call():
        with torch.inference_mode():
            return probabilities(calibrated(features))

    expected = call()
    calibrated.set_temperatures([1.0, 1.0])
    raw = call()
    calibrated.set_temperatures([2.0, 0.5])
    assert not torch.equal(expected[0], raw[0])  # the temperature changes the probabilities
    assert_all_equal(all_at_once([call] * THREADS), expected, "calibrated forward(features)")


def test_a_calibrated_method_from_8_threads_gives_the_sequential_probabilities_on_images(calibrated):
    bb = calibrated.backbone
    images = torch.randn(3, 3, bb.image_size, bb.image_size, generator=torch.Generator().manual_seed(1))

    def call():
        with torch.inference_mode():
            return probabilities(calibrated.forward_images(images))

    expected = call()
    assert_all_equal(all_at_once([call] * THREADS), expected, "calibrated forward_images")


@pytest.fixture
def birds():
    return TaskSpec((Attribute("species", ("red crested finch", "spotted thrush", "yellow billed finch"),
                               "a photo of a {}."),))


def test_microclip_from_8_threads_uses_its_own_layernorms_in_every_thread(birds):
    """Four threads run microCLIP (LayerNorm copies moved away from the backbone's, as if
    trained, and calibrated) and four run zero-shot on the same backbone at the same time:
    each gets its own sequential answer."""
    backbone = create_backbone("clipadapt-micro", None)  # its own: microCLIP's state is per backbone
    micro = build_method("microclip", backbone, birds).eval()
    with torch.no_grad():
        for p in micro.layernorms.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    micro.set_temperatures([2.0])
    plain = build_method("microclip", backbone, birds, {"train_layernorms": False}).eval()
    zeroshot = build_method("zeroshot", backbone, birds).eval()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))

    def run(method):
        def call():
            with torch.inference_mode():
                return probabilities(method.forward_images(images))
        return call

    mine, theirs = run(micro)(), run(zeroshot)()
    with torch.inference_mode():
        assert not torch.allclose(probabilities(plain.forward_images(images))[0], mine[0], atol=1e-3)  # copies matter
    results = all_at_once([run(micro), run(zeroshot)] * (THREADS // 2))
    assert_all_equal(results[0::2], mine, "microCLIP")
    assert_all_equal(results[1::2], theirs, "zero-shot beside microCLIP")
    with torch.inference_mode():  # and the backbone is as it was after
        assert all(torch.equal(a, b) for a, b in zip(run(zeroshot)(), theirs))


def test_the_exports_portable_ops_hold_in_its_own_thread_only(micro_backbone):
    """ONNX export traces inside `fast.portable_ops()` (F.linear, which ONNX knows): a
    prediction in another thread meanwhile keeps the fused oneDNN ops, and after it they are back."""
    from clipadapt.backbone import fast

    blocks = micro_backbone.visual.transformer.resblocks
    x = torch.zeros(1, 2, micro_backbone.width)
    fused = fast._OneDnnProjections if fast.onednn_available() else fast._LiveProjections
    inside, outside = threading.Event(), threading.Event()
    kinds = {}

    def exporter():
        with torch.no_grad(), fast.portable_ops():
            inside.set()
            outside.wait(10)
            kinds["export"] = type(fast.default_projections(blocks, x)[0])

    def predictor():
        inside.wait(10)
        with torch.no_grad():
            kinds["predict"] = type(fast.default_projections(blocks, x)[0])
        outside.set()

    threads = [threading.Thread(target=exporter), threading.Thread(target=predictor)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    with torch.no_grad():
        after = type(fast.default_projections(blocks, x)[0])
    assert kinds == {"export": fast._LiveProjections, "predict": fused} and after is fused
