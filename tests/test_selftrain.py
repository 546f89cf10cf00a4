"""Label-free self-training (SPEC 3): views, pseudo-labels without gradient, the fairness
term, the recipe, labels never learned from, and a learning run on synthetic birds."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from typer.testing import CliRunner

from clipadapt.backbone import create_backbone
from clipadapt.config import RunConfig, TrainConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.errors import ClipAdaptError
from clipadapt.engine.selftrain import SelfTrainer
from clipadapt.methods.microclip.selftraining import (
    MICROCLIP_RECIPE,
    SelfTrainingViews,
    class_histogram_entropy,
    combine_scores,
    fairness_loss,
    microclip_train_defaults,
    multiview_composite,
    random_square_crop,
    update_log_marginal,
)
from clipadapt.methods import build_method
from clipadapt.task import MISSING, Attribute, TaskSpec

CLASSES = ("a", "b", "c")
TASK = TaskSpec((Attribute("species", CLASSES, "a photo of a {} bird."),))
DESCRIPTIONS = {c: [f"a bird of kind {c}.", f"the {c} bird has marks."] for c in CLASSES}


def write_images(folder, sizes, seed=0) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def micro_method(**params):
    backbone = create_backbone("clipadapt-micro", None)  # fresh: microclip trains its LayerNorms
    return build_method("microclip", backbone, TASK, {"descriptions": DESCRIPTIONS, **params})


def cpu_config(**train) -> RunConfig:
    return RunConfig(method={"name": "microclip"}, train=microclip_train_defaults(
        TrainConfig.model_validate({"device": "cpu", **train})))


# --- views ---------------------------------------------------------------------------------


def test_views_have_the_right_shapes_are_seeded_and_leave_global_rngs_alone(tmp_path):
    paths = write_images(tmp_path, [(80, 60), (50, 70)])
    images = LabelledImages(paths, np.full((2, 1), MISSING), TASK)
    views = SelfTrainingViews(images, 32, (0.5,) * 3, (0.5,) * 3, crops=8, seed=5)
    states = (torch.random.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    weak, strong, crops, index = views[1]
    assert weak.shape == strong.shape == (3, 32, 32) and crops.shape == (8, 3, 32, 32) and index == 1
    assert not torch.equal(crops[0], crops[1])  # eight different crops
    again = views[1]
    assert all(torch.equal(x, y) for x, y in zip((weak, strong, crops), again[:3]))  # seeded by (seed, epoch, i)
    views.set_epoch(1)
    assert not torch.equal(strong, views[1][1])
    after = (torch.random.get_rng_state(), random.getstate(), np.random.get_state()[1])
    assert torch.equal(states[0], after[0]) and states[1] == after[1] and np.array_equal(states[2], after[2])
    no_crops = SelfTrainingViews(images, 32, (0.5,) * 3, (0.5,) * 3, crops=0, randaugment=None)
    assert no_crops[0][2].shape == (0, 3, 32, 32)


def test_random_square_crops_have_side_u_0_5_to_0_9_of_the_short_side():
    image = Image.new("RGB", (200, 120))
    torch.manual_seed(0)
    sides, lefts = [], set()
    for _ in range(300):
        crop = random_square_crop(image, 0.5, 0.9)
        assert crop.size[0] == crop.size[1]
        sides.append(crop.size[0])
    sides = np.array(sides)
    assert sides.min() >= 60 and sides.max() <= 108  # 0.5 x 120 .. 0.9 x 120
    assert sides.min() <= 63 and sides.max() >= 105  # and the whole range is used
    torch.manual_seed(1)
    boxes = {random_square_crop(Image.fromarray(np.arange(200 * 120 * 3, dtype=np.uint8).reshape(120, 200, 3)),
                                0.5, 0.5).getpixel((0, 0)) for _ in range(20)}
    assert len(boxes) > 5  # positions vary


# --- the math ------------------------------------------------------------------------------


def test_fairness_term_on_a_hand_worked_example():
    logits1 = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], requires_grad=True)  # softmax .5/.5 and .75/.25
    log_p1 = update_log_marginal(None, logits1)
    assert torch.allclose(log_p1.exp(), torch.tensor([0.625, 0.375]), atol=1e-6)  # first batch: its own mean
    loss1 = fairness_loss(log_p1)
    assert loss1.item() == pytest.approx(-(math.log(0.625) + math.log(0.375)), abs=1e-6)  # -2 mean_k log p_k
    assert loss1.item() == pytest.approx(1.4508329, abs=1e-6)

    logits2 = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)  # softmax .2/.8
    log_p2 = update_log_marginal(log_p1, logits2)
    assert torch.allclose(log_p2.exp(), torch.tensor([0.4125, 0.5875]), atol=1e-6)  # 0.5 (p_prev + batch)
    loss2 = fairness_loss(log_p2)
    assert loss2.item() == pytest.approx(1.4173981, abs=1e-6)
    loss2.backward()
    assert logits1.grad is None  # the previous marginal is detached
    assert logits2.grad is not None and logits2.grad.abs().sum() > 0
    # minimal (2 log K) at a uniform marginal
    assert fairness_loss(torch.full((5,), math.log(0.2))).item() == pytest.approx(2 * math.log(5))
    # same as the probability-space formula on random logits
    prev, cur = torch.randn(7, 4), torch.randn(7, 4)
    p_prev = torch.softmax(prev, -1).mean(0)
    direct = -2 * torch.log(0.5 * (p_prev + torch.softmax(cur, -1).mean(0))).mean()
    assert fairness_loss(update_log_marginal(p_prev.log(), cur)).item() == pytest.approx(direct.item(), abs=1e-5)


def test_multiview_composite_and_dynamic_aggregation_by_hand():
    crops = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # two crops, weak view = [1, 0]
    composite = multiview_composite(crops, torch.tensor([[1.0, 0.0]]))
    # r = (1, 0) -> softmax (0.7311, 0.2689) -> normalised (0.9385, 0.3453)
    assert torch.allclose(composite, torch.tensor([[0.9385079, 0.3452578]]), atol=1e-6)
    static, dynamic = torch.tensor([[0.2, 0.9]]), torch.tensor([[0.9, 0.1]])
    assert combine_scores(static, dynamic, 1.0).argmax(-1).item() == 1  # crop composite only
    assert combine_scores(static, dynamic, 0.0).argmax(-1).item() == 0  # current model only
    assert torch.allclose(combine_scores(static, dynamic, 0.5), torch.tensor([[0.55, 0.5]]))
    entropy, counts = class_histogram_entropy(np.array([0, 0, 1, 1]), 3)
    assert counts.tolist() == [2, 2, 0] and entropy == pytest.approx(math.log(2))


def test_pseudo_labels_are_computed_without_gradient_and_follow_the_formula():
    method = micro_method(gamma=0.3)
    trainer = SelfTrainer(method, cpu_config(), progress=False)
    grad_modes = []
    encode, cls_embedding = method.encode, method.cls_embedding
    method.encode = lambda x: grad_modes.append(torch.is_grad_enabled()) or encode(x)
    method.cls_embedding = lambda x: grad_modes.append(torch.is_grad_enabled()) or cls_embedding(x)
    weak, crops = torch.randn(4, 3, 32, 32), torch.randn(4, 5, 3, 32, 32)
    assert torch.is_grad_enabled()
    pl = trainer.pseudo_labels(weak, crops)
    assert grad_modes == [False, False]
    assert not (pl.labels.requires_grad or pl.static.requires_grad or pl.dynamic.requires_grad)
    assert all(p.grad is None for p in method.parameters())
    with torch.no_grad():  # the formula, by hand
        weak_out = encode(weak)
        crop_c = cls_embedding(crops.flatten(0, 1)).view(4, 5, -1)
        r = torch.einsum("bme,be->bm", crop_c, weak_out.cls_embedding)
        composite = F.normalize((torch.softmax(r, 1)[..., None] * crop_c).sum(1), dim=-1)
        static = composite @ method.llm_head.t()
        dynamic = weak_out.fused @ F.normalize(method.head, dim=-1).t()
    assert torch.allclose(pl.static, static, atol=1e-5) and torch.allclose(pl.dynamic, dynamic, atol=1e-5)
    assert torch.equal(pl.labels, (0.3 * static + 0.7 * dynamic).argmax(-1))
    no_crops = trainer.pseudo_labels(weak, crops[:, :0])
    assert torch.allclose(no_crops.static, weak_out.cls_embedding @ method.llm_head.t(), atol=1e-5)


def test_loss_is_ce_on_the_strong_view_plus_weighted_fairness():
    method = micro_method(fairness_weight=0.7)
    trainer = SelfTrainer(method, cpu_config(), progress=False)
    strong, targets = torch.randn(5, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1])
    loss, parts = trainer.loss(strong, targets)
    with torch.no_grad():
        logits = 100 * method.encode(strong).mixed @ F.normalize(method.head, dim=-1).t()
        ce = F.cross_entropy(logits, targets)
        fair = -2 * torch.log(torch.softmax(logits, -1).mean(0)).mean()
    assert loss.item() == pytest.approx((ce + 0.7 * fair).item(), rel=1e-4)
    assert parts["ce"] == pytest.approx(ce.item(), rel=1e-4) and parts["fair"] == pytest.approx(fair.item(), rel=1e-4)
    assert trainer.log_marginal is not None and not trainer.log_marginal.requires_grad
    plain = SelfTrainer(micro_method(fairness_weight=0.0), cpu_config(), progress=False)
    loss0, parts0 = plain.loss(strong, targets)
    assert "fair" not in parts0 and loss0.item() == pytest.approx(parts0["ce"])


def test_recipe_fills_only_the_keys_a_config_leaves_unset():
    train = microclip_train_defaults(TrainConfig.model_validate({"lr": 3e-4, "epochs": 2}))
    assert (train.lr, train.epochs) == (3e-4, 2)
    for key in ("weight_decay", "min_lr", "warmup_epochs", "batch_size", "grad_clip", "seed", "optimizer"):
        assert getattr(train, key) == MICROCLIP_RECIPE[key]
    assert (train.weight_decay, train.min_lr, train.warmup_epochs, train.grad_clip) == (0.1, 2e-6, 0, 1.0)


def test_training_labels_are_never_learned_from_and_lr_is_cosine_per_iteration(tmp_path):
    paths = write_images(tmp_path, [(40, 40)] * 6)
    truth = np.array([[0], [1], [2], [0], [1], [2]])
    states, histories = [], []
    # the same images with their true labels, then with wrong labels and no hidden labels at all
    for labels, hidden in ((truth, truth), ((truth + 1) % 3, None)):
        method = micro_method(crops=2)
        trainer = SelfTrainer(method, cpu_config(epochs=2, batch_size=2, lr=1e-3), progress=False)
        histories.append(trainer.fit(LabelledImages(paths, labels, TASK), hidden_labels=hidden).history)
        states.append({k: v.clone() for k, v in method.trained_state().items()})
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert any(not torch.equal(states[0][k], v) for k, v in micro_method().trained_state().items())  # it trained
    first = histories[0]
    assert len(first) == 2 and 0.0 <= first[0]["pseudo_label_accuracy"] <= 1.0 and first[0]["pseudo_labels_scored"] == 6
    assert "pseudo_label_accuracy" not in histories[1][0]
    assert [row["pseudo_label_counts"] for row in first] == [row["pseudo_label_counts"] for row in histories[1]]
    assert sum(first[0]["pseudo_label_counts"]) == 6 and 0 <= first[0]["pseudo_label_entropy"] <= math.log(3) + 1e-9
    # cosine per iteration, no warm-up: 6 steps, last lr of epoch 1 is step 2, of epoch 2 step 5
    cosine = [2e-6 + 0.5 * (1e-3 - 2e-6) * (1 + math.cos(math.pi * s / 6)) for s in range(6)]
    assert first[0]["lr"] == pytest.approx(cosine[2]) and first[1]["lr"] == pytest.approx(cosine[5])


def test_the_true_label_upper_bound_learns_from_the_hidden_labels_and_needs_every_one(tmp_path):
    paths = write_images(tmp_path, [(40, 40)] * 6)
    truth = np.array([0, 1, 2, 0, 1, 2])
    unlabelled = LabelledImages(paths, np.full((6, 1), MISSING), TASK)
    method = micro_method(crops=0)
    trainer = SelfTrainer(method, cpu_config(epochs=1, batch_size=3, lr=1e-3, seed=5), progress=False)
    targets_seen = []
    real_loss = trainer.loss
    trainer.loss = lambda strong, targets: (targets_seen.append(targets.clone()), real_loss(strong, targets))[1]
    trainer.fit(unlabelled, hidden_labels=truth, targets="true")
    order = torch.randperm(6, generator=torch.Generator().manual_seed(5 * 1000 + 0))  # the loop's epoch-0 order
    assert torch.equal(torch.cat(targets_seen), torch.as_tensor(truth)[order])
    # with pseudo-labels the same images and labels train other weights (the labels matter only here)
    pseudo = micro_method(crops=0)
    SelfTrainer(pseudo, cpu_config(epochs=1, batch_size=3, lr=1e-3, seed=5), progress=False).fit(
        unlabelled, hidden_labels=truth)
    assert any(not torch.equal(v, pseudo.trained_state()[k]) for k, v in method.trained_state().items())
    partly = truth.copy()
    partly[2] = MISSING
    for hidden in (None, partly):
        with pytest.raises(ClipAdaptError, match="upper bound needs the label of every training image"):
            SelfTrainer(micro_method(), cpu_config(epochs=1), progress=False).fit(unlabelled, hidden, targets="true")


# --- a learning run, through the command ---------------------------------------------------

EPOCHS = 2


@pytest.fixture(scope="module")
def bird_run(tmp_path_factory):
    """`clipadapt adapt` on synthetic birds (30 unlabelled train / 20 test images per class,
    64 px) with the embedded tiny CLIP: the SPEC recipe, 2 epochs of batch 32 (a run, not a learning test:
    see the README for why microCLIP does not beat zero-shot with the tiny CLIP)."""
    tmp = tmp_path_factory.mktemp("adapt")
    config = tmp / "birds.yaml"
    config.write_text(yaml.safe_dump({
        "backbone": {"name": "clipadapt-tiny", "pretrained": "embedded"},
        "data": {"format": "synthetic-finegrained", "root": "birds",
                 "synthetic": {"n_train_per_class": 30, "n_test_per_class": 20, "seed": 0, "image_size": 64}},
        "method": {"name": "microclip", "params": {"templates": ["a photo of a {}, a type of bird."]}},
        "train": {"epochs": EPOCHS, "batch_size": 32, "device": "cpu"},
    }))
    from clipadapt.cli.main import app
    # One intra-op thread: on a shared 2-core machine a busy second core makes OpenMP's
    # spin-waits cost 10-100x (measured: batched eigh 7 ms -> 1 s, a forward 35 -> 137 ms).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, ["adapt", str(config), "--out", str(tmp / "run"), "--quiet"])
    finally:
        torch.set_num_threads(threads)
    return tmp, result


def test_adapt_command_writes_a_run_folder_that_evaluates_and_predicts(bird_run):
    tmp, result = bird_run
    assert result.exit_code == 0, result.output
    assert "zero-shot CLIP, templates" in result.output and "microCLIP (self-trained, no labels)" in result.output
    run = tmp / "run"
    for name in ("card.json", "checkpoint.safetensors", "metrics.json", "history.json", "config.yaml", "predictions.csv"):
        assert (run / name).is_file(), name
    card = json.loads((run / "card.json").read_text())
    assert card["method"] == "microclip" and card["data"]["train_labels_used"] is False
    assert card["params"]["descriptions"]["red crested finch"]  # inlined: the card rebuilds the heads
    assert card["config"]["train"]["lr"] == 1e-4 and card["config"]["train"]["weight_decay"] == 0.1  # the recipe
    history = json.loads((run / "history.json").read_text())
    assert len(history) == EPOCHS and all(0 <= row["pseudo_label_accuracy"] <= 1 for row in history)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["comparison"]) == {"zeroshot_templates", "zeroshot_descriptions", "zeroshot_llm_head",
                                          "microclip_init", "microclip"}
    adapted = metrics["comparison"]["microclip"]["accuracy"]
    assert adapted == metrics["mean"]["accuracy"]

    from clipadapt.engine.checkpoint import load_run
    from clipadapt.predict import predict_images
    from clipadapt.workflow import eval_run

    assert eval_run(run, progress=False)["mean"]["accuracy"] == pytest.approx(adapted)  # `clipadapt eval`
    method, _ = load_run(run)
    paths = sorted((tmp / "birds" / "test" / "red crested finch").glob("*.png"))[:4]
    table = predict_images(method, paths, torch.device("cpu"), progress=False)  # `clipadapt predict`
    assert table["ok"].all() and len(table) == 4
    from pandas import read_csv

    written = read_csv(run / "predictions.csv")
    by_path = dict(zip(written["path"], written["class"]))
    assert table["class"].tolist() == [by_path[str(p)] for p in paths]  # same model, same centre crop


def test_adapt_with_skip_lists_the_unusable_images(tmp_path):
    """`clipadapt adapt` under data.on_bad_image: skip leaves a broken image out and lists it
    in RUN/skipped_images.csv with its reason, as `train` does."""
    import pandas as pd

    from clipadapt.config import validate_config
    from clipadapt.synthetic.finegrained import write_finegrained_dataset
    from clipadapt.workflow import adapt_run

    root = write_finegrained_dataset(tmp_path / "birds", n_train_per_class=2, n_test_per_class=1, image_size=32)
    broken = root / "train" / "long billed wren" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cfg = validate_config({
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "folder", "root": str(root), "on_bad_image": "skip"},
        "method": {"name": "microclip", "params": {"crops": 1, "randaugment": None}},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
    }, source="test")
    outcome = adapt_run(cfg, tmp_path / "run", progress=False, backbone=create_backbone("clipadapt-micro", None))
    listed = pd.read_csv(outcome.run_dir / "skipped_images.csv")
    assert listed["path"].tolist() == [str(broken)] and listed["reason"].iloc[0]
    assert outcome.card["data"]["train"] == 20  # the 20 good training images, the broken one left out


def test_adapt_true_labels_is_the_labelled_upper_bound_and_says_so(tmp_path):
    """`clipadapt adapt --true-labels`: the same run learning from the training labels; the
    card records it and the printed table is titled as the upper bound, not label-free."""
    from clipadapt.cli.main import app
    from clipadapt.synthetic.finegrained import write_finegrained_dataset

    root = write_finegrained_dataset(tmp_path / "birds", n_train_per_class=2, n_test_per_class=1, image_size=32)
    config = tmp_path / "birds.yaml"
    config.write_text(yaml.safe_dump({
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "folder", "root": str(root)},
        "method": {"name": "microclip", "params": {"crops": 1, "randaugment": None}},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
    }))
    result = CliRunner().invoke(app, ["adapt", str(config), "--out", str(tmp_path / "run"), "--true-labels",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert "TRUE training labels used" in result.output and "(upper bound)" in result.output
    assert json.loads((tmp_path / "run" / "card.json").read_text())["data"]["train_labels_used"] is True


def test_adapt_refuses_calibration_it_cannot_fit():
    from clipadapt.config import validate_config
    from clipadapt.workflow import prepare_adapt_config

    cfg = validate_config({"train": {"calibrate": "temperature"}, "data": {"format": "synthetic-finegrained"}})
    with pytest.raises(ClipAdaptError, match="label-free.*train.calibrate|train.calibrate.*label-free"):
        prepare_adapt_config(cfg)
