"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022): the logits and the alpha / beta
search equal a plain re-computation of the authors' pipeline (gaopengcuhk/Tip-Adapter,
utils.py and main.py), the search reads validation only, both learn on the synthetic
few-shot birds, export to ONNX and reload strictly."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipadapt.backbone import ImageFeatures, create_backbone
from clipadapt.config import RunConfig, validate_config
from clipadapt.data.dataset import LabelledImages
from clipadapt.engine.checkpoint import build_card, load_run, load_state_strict, write_checkpoint
from clipadapt.engine.trainer import Runner
from clipadapt.errors import ClipAdaptError
from clipadapt.features.encoding import view_batches
from clipadapt.methods import build_method
from clipadapt.methods.tip_adapter import NoValidationWarning
from clipadapt.task import MISSING, Attribute, TaskSpec

TASK = TaskSpec((Attribute("weather", ("clear", "foggy", "rainy")),))
TWO = TaskSpec((Attribute("weather", ("clear", "foggy", "rainy")), Attribute("glare", ("no", "yes"))))


def seeded(*shape, seed=0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def authors_tip_logits(views: np.ndarray, labels: np.ndarray, text: np.ndarray, test: np.ndarray, scale: float,
                       alpha: float, beta: float, keys: np.ndarray | None = None) -> np.ndarray:
    """The authors' pipeline step by step, in float64 numpy. views [V, N, E]: the raw image
    features of each augment epoch; text [K, E]: the raw class prompt features; test [B, E]
    raw; keys: Tip-Adapter-F's trained adapter weight [N, E] (None: the cache itself)."""
    # utils.build_cache_model: features of every augment epoch stacked, mean over epochs,
    # normalised, transposed to [E, N]; values one-hot [N, K]
    cache_keys = views.mean(axis=0)
    cache_keys = cache_keys / np.linalg.norm(cache_keys, axis=-1, keepdims=True)
    cache_keys = cache_keys.T
    cache_values = np.eye(text.shape[0])[labels]
    # utils.clip_classifier: normalised text features (one template here), [E, K]
    clip_weights = (text / np.linalg.norm(text, axis=-1, keepdims=True)).T
    # utils.pre_load_features: normalised test features
    f = test / np.linalg.norm(test, axis=-1, keepdims=True)
    # main.run_tip_adapter (Tip-Adapter-F: the adapter, Linear(E -> N) of weight `keys`, gives the affinity)
    clip_logits = scale * f @ clip_weights
    affinity = f @ cache_keys if keys is None else f @ keys.T
    cache_logits = np.exp((-1) * (beta - beta * affinity)) @ cache_values
    return clip_logits + cache_logits * alpha


def authors_search(views, labels, text, val, val_labels, scale, scales=(7.0, 3.0), steps=(200, 20), keys=None):
    """utils.search_hp: beta outer, alpha inner, the first pair of strictly higher accuracy."""
    beta_list = [i * (scales[0] - 0.1) / steps[0] + 0.1 for i in range(steps[0])]
    alpha_list = [i * (scales[1] - 0.1) / steps[1] + 0.1 for i in range(steps[1])]
    best_acc, best_beta, best_alpha = 0, 0, 0
    for beta in beta_list:
        for alpha in alpha_list:
            logits = authors_tip_logits(views, labels, text, val, scale, alpha, beta, keys)
            acc = 100 * float((logits.argmax(1) == val_labels).sum()) / len(val_labels)
            if acc > best_acc:
                best_acc, best_beta, best_alpha = acc, beta, alpha
    return best_alpha, best_beta


def fitted(name: str, backbone, task=TASK, n_per_class: int = 4, views: int = 3, params: dict | None = None, seed=0):
    """`name` built on `backbone` with its cache fitted on random features: (method, the raw
    views [V, N, E], the labels [N, A])."""
    method = build_method(name, backbone, task, {"augment_views": views, **(params or {})}).eval()
    n = n_per_class * task.attributes[0].num_classes
    raw = seeded(views, n, backbone.embed_dim, seed=seed)
    labels = torch.stack([torch.arange(n) % a.num_classes for a in task.attributes], dim=1)
    method.fit_features(raw.mean(0), labels)
    return method, raw, labels


def text_features(backbone, task, a=0) -> np.ndarray:
    return backbone.encode_text(task.attributes[a].prompts()).double().numpy()


# ------------------------------------------------------------------ (a) parity with the authors


def test_logits_equal_the_authors_pipeline_step_by_step(micro_backbone):
    method, raw, labels = fitted("tip_adapter", micro_backbone, params={"alpha": 1.7, "beta": 3.2})
    test = seeded(6, micro_backbone.embed_dim, seed=5)
    ours = method(ImageFeatures(None, test))[0].double().numpy()
    theirs = authors_tip_logits(raw.double().numpy(), labels[:, 0].numpy(), text_features(micro_backbone, TASK),
                                test.double().numpy(), micro_backbone.logit_scale, 1.7, 3.2)
    gap = float(np.abs(ours - theirs).max())
    print(f"Tip-Adapter parity: max abs logit difference {gap:.2e}")
    assert gap < 1e-5
    # alpha 0 is zero-shot CLIP exactly
    zeroshot = build_method("zeroshot", micro_backbone, TASK)(ImageFeatures(None, test))[0]
    method.alpha.zero_()
    assert torch.allclose(method(ImageFeatures(None, test))[0], zeroshot, atol=1e-6)


def test_tip_adapter_f_logits_equal_the_authors_with_trained_keys(micro_backbone):
    method, raw, labels = fitted("tip_adapter_f", micro_backbone, params={"alpha": 2.0, "beta": 5.5})
    with torch.no_grad():  # keys as after some fine-tuning: moved, no longer unit length
        method.cache_keys.add_(0.3 * seeded(*method.cache_keys.shape, seed=9))
    test = seeded(6, micro_backbone.embed_dim, seed=6)
    ours = method(ImageFeatures(None, test))[0].detach().double().numpy()
    theirs = authors_tip_logits(raw.double().numpy(), labels[:, 0].numpy(), text_features(micro_backbone, TASK),
                                test.double().numpy(), micro_backbone.logit_scale, 2.0, 5.5,
                                keys=method.cache_keys.detach().double().numpy())
    gap = float(np.abs(ours - theirs).max())
    print(f"Tip-Adapter-F parity: max abs logit difference {gap:.2e}")
    assert gap < 1e-5


@pytest.mark.parametrize("name", ["tip_adapter", "tip_adapter_f"])
def test_the_search_chooses_the_authors_alpha_and_beta(micro_backbone, name):
    method, raw, labels = fitted(name, micro_backbone, n_per_class=5, params={"search_beta": [7.0, 40],
                                                                               "search_alpha": [3.0, 10]})
    # validation images near the cache's own, so the cache matters and the grid has a clear best
    val_labels = torch.arange(15) % 3
    val = raw.mean(0)[:15] + 0.8 * seeded(15, micro_backbone.embed_dim, seed=3)
    method.select_on_validation(val, val_labels[:, None])
    keys = method.cache_keys.detach().double().numpy() if name == "tip_adapter_f" else None
    alpha, beta = authors_search(raw.double().numpy(), labels[:, 0].numpy(), text_features(micro_backbone, TASK),
                                 val.double().numpy(), val_labels.numpy(), micro_backbone.logit_scale,
                                 steps=(40, 10), keys=keys)
    chosen = method.chosen()["weather"]
    assert chosen["alpha"] == pytest.approx(alpha, abs=1e-6) and chosen["beta"] == pytest.approx(beta, abs=1e-6)
    assert (alpha, beta) != (1.17, 1.0)  # the search moved them


def test_the_cache_is_the_mean_of_the_raw_views_normalised_with_one_hot_values(micro_backbone):
    method, raw, labels = fitted("tip_adapter", micro_backbone, task=TWO, views=4)
    mean = raw.mean(0)
    assert torch.allclose(method.cache_keys, mean / mean.norm(dim=-1, keepdim=True), atol=1e-6)
    assert torch.equal(method.values(1).argmax(1), labels[:, 1]) and torch.equal(method.values(1).sum(1),
                                                                                 torch.ones(len(labels)))
    # an image not labelled for an attribute gives a zero row there
    labels[0, 1] = MISSING
    method.fit_features(mean, labels)
    assert method.values(1)[0].abs().sum() == 0 and method.values(0)[0].sum() == 1
    assert method.params.cache_size == len(labels) and method.feature_views() == 4


# ------------------------------------------------------------------ the engine's side


def small_images(root: Path, n: int = 6) -> LabelledImages:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = root / f"{i}.png"
        Image.fromarray((rng.random((40, 36, 3)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return LabelledImages(paths, np.arange(n)[:, None] % 3, TASK)


@pytest.mark.parametrize("cache", ["auto", "off"])
def test_runner_embeddings_are_the_mean_of_the_seeded_views(micro_backbone, tmp_path, cache):
    images = small_images(tmp_path / "img")
    method = build_method("tip_adapter", micro_backbone, TASK, {"augment_views": 3})
    cfg = RunConfig.model_validate({"features": {"dir": str(tmp_path / "store"), "cache": cache},
                                    "train": {"device": "cpu"}})
    got = Runner(method, cfg, progress=False).embeddings(images, views=3)
    total = torch.zeros(len(images), micro_backbone.embed_dim)
    with torch.no_grad():
        for v in range(3):
            for pixels, items in view_batches(micro_backbone, images.paths, None, range(len(images)), v, 3, 4):
                total[items] += micro_backbone.forward_features(pixels, None).embedding
    assert torch.allclose(got, total / 3, atol=1e-5)


def test_without_validation_alpha_and_beta_keep_their_initial_values_with_a_warning(micro_backbone):
    method, _, _ = fitted("tip_adapter", micro_backbone)
    with pytest.warns(NoValidationWarning, match="no validation split.*never chosen on the test split"):
        method.select_on_validation(None, None)
    assert method.chosen()["weather"] == pytest.approx({"alpha": 1.17, "beta": 1.0})


def test_multi_label_tasks_are_refused(micro_backbone):
    task = TaskSpec((Attribute("hat", ("no", "yes")),), multilabel=True)
    for name in ("tip_adapter", "tip_adapter_f"):
        with pytest.raises(ClipAdaptError, match=f"{name} scores single-label attributes.*multi-label"):
            build_method(name, micro_backbone, task, {})


def test_tip_adapter_f_trains_the_keys_only(micro_backbone):
    method, _, labels = fitted("tip_adapter_f", micro_backbone)
    assert {n for n, p in method.named_parameters() if p.requires_grad} == {"cache_keys"}
    assert method.num_trainable() == method.cache_keys.numel() and method.param_group_options("cache_keys") == {"eps": 1e-4}
    before = method.cache_keys.detach().clone()
    loss = torch.nn.functional.cross_entropy(method(ImageFeatures(None, seeded(8, micro_backbone.embed_dim)))[0],
                                             labels[:8, 0])
    loss.backward()
    torch.optim.AdamW([method.cache_keys], lr=1e-3).step()
    assert not torch.equal(before, method.cache_keys.detach())
    assert build_method("tip_adapter", micro_backbone, TASK, {}).num_trainable() == 0


@pytest.mark.parametrize("name", ["tip_adapter", "tip_adapter_f"])
def test_checkpoint_round_trip_is_strict(micro_backbone, tmp_path, name):
    method, _, _ = fitted(name, micro_backbone, task=TWO)
    method.alpha.copy_(torch.tensor([2.5, 0.4]))
    method.beta.copy_(torch.tensor([3.0, 6.1]))
    state = method.trained_state()
    assert set(state) == {"cache_keys", "cache_values_0", "cache_values_1", "alpha", "beta"}
    write_checkpoint(tmp_path / "run", method, build_card(method, config={}, seed=0), state)
    loaded, card = load_run(tmp_path / "run")  # rebuilt from the card: a cache of the recorded size
    assert card.params["cache_size"] == 12 and loaded.chosen() == method.chosen()
    feats = ImageFeatures(None, seeded(5, micro_backbone.embed_dim, seed=2))
    for a, b in zip(method(feats), loaded(feats)):
        assert torch.equal(a, b)
    wrong = build_method(name, micro_backbone, TWO, {"cache_size": 7})
    with pytest.raises(ClipAdaptError, match="shape mismatches"):
        load_state_strict(wrong, state, source="test")


@pytest.mark.parametrize("family", ["siglip", "eva", "clip"])
def test_both_run_on_every_backbone_family(family):
    backbone = create_backbone({"siglip": "clipadapt-micro-map", "eva": "clipadapt-micro-eva",
                                "clip": "clipadapt-micro"}[family], None)
    images = seeded(2, 3, backbone.image_size, backbone.image_size)
    for name in ("tip_adapter", "tip_adapter_f"):
        method, _, _ = fitted(name, backbone)
        with torch.no_grad():
            logits = method.forward_images(images)[0]
            same = method(backbone.forward_features(images, None))[0]
        assert logits.shape == (2, 3) and torch.isfinite(logits).all() and (logits - same).abs().max() < 1e-5


# ------------------------------------------------------------------ (d) ONNX export parity


def test_onnx_export_gives_the_probabilities_of_predict(micro_backbone, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from clipadapt.export import export_run
    from clipadapt.predict import predict_images
    from clipadapt.runtime import predict_onnx

    backbone = create_backbone("clipadapt-micro", None)
    method, _, _ = fitted("tip_adapter_f", backbone, task=TWO)
    with torch.no_grad():
        method.cache_keys.add_(0.2 * seeded(*method.cache_keys.shape, seed=4))
    method.alpha.copy_(torch.tensor([2.5, 0.9]))
    method.beta.copy_(torch.tensor([3.0, 6.1]))
    run = tmp_path / "run"
    write_checkpoint(run, method, build_card(method, config={}, seed=0))
    onnx_file = export_run(run, tmp_path / "tip.onnx").path
    paths = small_images(tmp_path / "img", 5).paths
    loaded, _ = load_run(run)
    ours = predict_images(loaded, paths, torch.device("cpu"), batch_size=4, progress=False)
    exported = predict_onnx(onnx_file, paths, batch_size=3)
    columns = [c for c in ours.columns if ":p" in c]
    gap = float(np.abs(exported[columns].to_numpy(float) - ours[columns].to_numpy(float)).max())
    print(f"Tip-Adapter-F ONNX parity: max abs probability difference {gap:.2e}")
    assert gap < 1e-4
    empty = build_method("tip_adapter", backbone, TASK, {})
    assert "cache is empty" in empty.export_refusal() and method.export_refusal() is None


# ------------------------------------------------------------------ (b), (c) on the synthetic birds


BIRDS = {"backbone": {"name": "clipadapt-tiny", "pretrained": "embedded"},
         "data": {"format": "synthetic-coop", "shots": 16, "synthetic": {"species_tones": True}},
         "train": {"device": "cpu"}}


def birds_config(root: Path, method: str) -> RunConfig:
    data = {**BIRDS["data"], "root": str(root / "birds")}
    return validate_config({**BIRDS, "data": data, "method": {"name": method}, "features": {"dir": str(root / "store")}})


@pytest.fixture(scope="module")
def birds(tmp_path_factory):
    """Zero-shot, Tip-Adapter and Tip-Adapter-F at K = 16 on the full synthetic birds (10
    classes; 16 train, 4 validation, 30 test images each): name -> (test accuracy, run)."""
    from clipadapt.workflow import train_run

    root = tmp_path_factory.mktemp("birds")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("zeroshot", "tip_adapter", "tip_adapter_f"):
            outcome = train_run(birds_config(root, name), root / name, progress=False)
            out[name] = (outcome.metrics["mean"]["accuracy"], outcome.run_dir)
    return root, out


def test_tip_adapter_beats_zero_shot_and_tip_adapter_f_beats_tip_adapter_at_16_shots(birds):
    _, runs = birds
    zeroshot, tip, tip_f = (runs[n][0] for n in ("zeroshot", "tip_adapter", "tip_adapter_f"))
    print(f"K=16 synthetic birds, test accuracy: zero-shot {zeroshot:.3f}, Tip-Adapter {tip:.3f}, "
          f"Tip-Adapter-F {tip_f:.3f}")
    # measured: 0.363, 0.440, 0.510 (300 test images)
    assert tip > zeroshot + 0.04 and tip_f > tip + 0.04, (zeroshot, tip, tip_f)
    card = json.loads((runs["tip_adapter_f"][1] / "card.json").read_text())
    assert card["params"]["cache_size"] == 160 and card["selection"]["epochs_run"] == 20
    assert card["config"]["train"]["lr"] == 1e-3 and card["config"]["train"]["warmup_epochs"] == 0


def permuted(split: str):
    """build_splits with the labels of `split` shuffled (a seeded permutation of the rows)."""
    from clipadapt.data.formats import build_splits

    def build(cfg):
        splits = build_splits(cfg)
        images = getattr(splits, split)
        images.labels = images.labels[np.random.default_rng(0).permutation(len(images))]
        return splits

    return build


def test_the_search_reads_validation_never_test(birds, monkeypatch):
    from clipadapt.workflow import train_run

    root, runs = birds
    original = load_run(runs["tip_adapter"][1])[0].chosen()
    monkeypatch.setattr("clipadapt.workflow.train.build_splits", permuted("test"))
    other_test = train_run(birds_config(root, "tip_adapter"), root / "test-shuffled", progress=False)
    assert load_run(other_test.run_dir)[0].chosen() == original  # the test labels never reach the choice
    assert other_test.metrics["mean"]["accuracy"] != runs["tip_adapter"][0]  # yet they were other labels
    monkeypatch.setattr("clipadapt.workflow.train.build_splits", permuted("val"))
    other_val = train_run(birds_config(root, "tip_adapter"), root / "val-shuffled", progress=False)
    assert load_run(other_val.run_dir)[0].chosen() != original  # the validation labels do
