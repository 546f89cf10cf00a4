"""Losses, schedule, optimiser state and config handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipadapt.config import RunConfig, load_config, parse_override
from clipadapt.engine.losses import AttributeLoss, class_weights, focal_loss
from clipadapt.engine.optim import load_optimizer_state, optimizer_state
from clipadapt.engine.schedule import lr_at_epoch
from clipadapt.errors import ClipAdaptError


def test_inverse_frequency_weights_sum_to_one():
    w = class_weights(np.array([90, 10]), "weighted_ce")
    assert torch.allclose(w, torch.tensor([0.1, 0.9]))


def test_class_balanced_weights_follow_cui_et_al():
    beta = 0.999
    counts = np.array([1000, 10])
    raw = np.array([(1 - beta) / (1 - beta ** 1000), (1 - beta) / (1 - beta ** 10)])
    assert torch.allclose(class_weights(counts, "class_balanced", beta), torch.tensor(raw / raw.sum(), dtype=torch.float32))


def test_focal_with_gamma_zero_and_no_alpha_is_cross_entropy():
    logits, target = torch.randn(8, 3), torch.randint(0, 3, (8,))
    assert torch.allclose(focal_loss(logits, target, None, 0.0), F.cross_entropy(logits, target), atol=1e-6)
    # confident correct predictions are down-weighted by (1 - p)^gamma
    assert focal_loss(logits, target, None, 2.0) < F.cross_entropy(logits, target)


def test_attribute_loss_masks_unlabelled_rows():
    loss = AttributeLoss("ce", [np.array([5, 5]), np.array([5, 5])])
    logits = [torch.randn(4, 2), torch.randn(4, 2)]
    labels = torch.tensor([[0, -1], [1, -1], [-1, -1], [1, 0]])
    expected = F.cross_entropy(logits[0][[0, 1, 3]], torch.tensor([0, 1, 1])) + F.cross_entropy(logits[1][[3]], torch.tensor([0]))
    assert torch.allclose(loss(logits, labels), expected)


def test_warmup_then_cosine():
    lrs = [lr_at_epoch(e, 5e-4, 100, 5, 1e-5) for e in range(100)]
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[5] == pytest.approx(5e-4)
    assert all(a <= b for a, b in zip(lrs[:5], lrs[1:6]))  # rising during warm-up
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))  # falling afterwards
    assert lrs[-1] < 1e-6 + 5e-4 * 0.01


def test_optimizer_state_round_trip():
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.AdamW([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    tensors, meta = optimizer_state(opt)
    p2 = torch.nn.Parameter(p.detach().clone())
    opt2 = torch.optim.AdamW([p2], lr=0.1)
    load_optimizer_state(opt2, tensors, meta)
    for o in (opt, opt2):
        o.param_groups[0]["params"][0].grad = torch.ones(3)
        o.step()
    assert torch.allclose(p, p2)


def test_unknown_config_key_suggests_the_right_one(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 0.1\n  epochs: 3\n")
    with pytest.raises(ClipAdaptError, match="unknown key 'train.learning_rate'"):
        load_config(path)
    path.write_text("trian:\n  epochs: 3\n")
    with pytest.raises(ClipAdaptError, match="Did you mean 'train'"):
        load_config(path)


def test_overrides_and_relative_paths(tmp_path):
    path = tmp_path / "sub" / "c.yaml"
    path.parent.mkdir()
    path.write_text("data:\n  root: ../data\nmethod: coop\n")
    cfg = load_config(path, ["train.lr=1e-3", "data.attributes=[glare, weather]", "method.params.n_ctx=4"])
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.data.attributes == ["glare", "weather"]
    assert cfg.method.name == "coop" and cfg.method.params == {"n_ctx": 4}
    assert cfg.data.root == (tmp_path / "data").resolve()
    assert parse_override("train.epochs=3") == (["train", "epochs"], 3)
    with pytest.raises(ClipAdaptError, match="key=value"):
        parse_override("train.epochs")


def test_bad_value_names_the_key():
    from clipadapt.config import validate_config

    with pytest.raises(ClipAdaptError, match="'train.batch_size'"):
        validate_config({"train": {"batch_size": 0}})
    from clipadapt.metrics.table import resolve_monitor

    assert resolve_monitor(RunConfig().train.monitor, multilabel=False) == "macro_f1"
    assert resolve_monitor(RunConfig().train.monitor, multilabel=True) == "mA"


def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path):
    from clipadapt.io import write_text

    write_text(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")
    assert (tmp_path / "a.txt").stat().st_mode == (tmp_path / "b.txt").stat().st_mode
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
